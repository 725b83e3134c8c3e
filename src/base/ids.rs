//! Names for the configuration's numbered parts, shared by the layers that refer to them
//! without depending on the configuration itself.

/// Position of a provider in the configuration's providers. A type of its own, so a provider's
/// number can never be taken for an address list's (or for a position in any other list).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ProviderIndex(usize);

/// Position of an address list in the configuration's address lists.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ListIndex(usize);

impl ProviderIndex {
    pub const fn new(position: usize) -> Self {
        ProviderIndex(position)
    }

    pub const fn position(self) -> usize {
        self.0
    }
}

impl ListIndex {
    pub const fn new(position: usize) -> Self {
        ListIndex(position)
    }

    pub const fn position(self) -> usize {
        self.0
    }
}

/// Something fetched at run time, as a decision names it when it waits for it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RemoteSource {
    Keys(ProviderIndex),
    AddressList(ListIndex),
}
