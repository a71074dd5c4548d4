//! The pure parts of Azure authentication, shared by the Azure sinks and fuzzed on their own
//! (`fuzz/`): no I/O, no SDK.
//!
//! - [`sas`]: account SAS signing from a storage account key, and redaction of SAS
//!   signatures from any text that may reach a log or a status (sink-azure-blob).
//! - [`entra`]: reading Microsoft Entra ID's token replies (sink-azure-monitor).

pub mod entra;
pub mod sas;
