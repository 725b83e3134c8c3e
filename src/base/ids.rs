//! Names for the configuration's numbered parts, shared by the layers that refer to them
//! without depending on the configuration itself.

/// Position of a provider in the configuration's providers.
pub type ProviderIndex = usize;

/// Position of an address list in the configuration's address lists.
pub type ListIndex = usize;

/// Something fetched at run time, as a decision names it when it waits for it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RemoteSource {
    Keys(ProviderIndex),
    AddressList(ListIndex),
}
