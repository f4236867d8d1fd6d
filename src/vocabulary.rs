//! The words the supervisor and its RPC tools share: what a health check covers and which
//! recovery an operator asks for. Both the supervisor and `rpc` take them from here.

/// `getSystemHealth`'s `checkType`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum CheckType {
    #[default]
    Quick,
    Full,
}

impl CheckType {
    pub const ALL: [CheckType; 2] = [CheckType::Quick, CheckType::Full];

    pub fn as_str(self) -> &'static str {
        match self {
            CheckType::Quick => "quick",
            CheckType::Full => "full",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|value| value.as_str() == text)
    }
}

/// `recoverSystem`'s `errorType`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RecoveryType {
    Memory,
    Gpu,
    Process,
}

impl RecoveryType {
    pub const ALL: [RecoveryType; 3] = [RecoveryType::Memory, RecoveryType::Gpu, RecoveryType::Process];

    pub fn as_str(self) -> &'static str {
        match self {
            RecoveryType::Memory => "memory",
            RecoveryType::Gpu => "gpu",
            RecoveryType::Process => "process",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|value| value.as_str() == text)
    }
}
