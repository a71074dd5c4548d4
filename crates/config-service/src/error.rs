//! The service's typed error and its gRPC mapping. Messages are written for admins; they
//! never contain secrets (validation errors name fields, not values of secret fields).

use tonic::Status;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ServiceError {
    #[error("{0}")]
    InvalidArgument(String),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    AlreadyExists(String),
    #[error("{0}")]
    FailedPrecondition(String),
    #[error("{0}")]
    PermissionDenied(String),
    #[error("{0}")]
    Unauthenticated(String),
    #[error("{0}")]
    Unavailable(String),
    /// A concurrent change won; the caller should re-read and retry.
    #[error("{0}")]
    Aborted(String),
    #[error("{0}")]
    Internal(String),
}

impl From<ServiceError> for Status {
    fn from(e: ServiceError) -> Status {
        match e {
            ServiceError::InvalidArgument(m) => Status::invalid_argument(m),
            ServiceError::NotFound(m) => Status::not_found(m),
            ServiceError::AlreadyExists(m) => Status::already_exists(m),
            ServiceError::FailedPrecondition(m) => Status::failed_precondition(m),
            ServiceError::PermissionDenied(m) => Status::permission_denied(m),
            ServiceError::Unauthenticated(m) => Status::unauthenticated(m),
            ServiceError::Unavailable(m) => Status::unavailable(m),
            ServiceError::Aborted(m) => Status::aborted(m),
            ServiceError::Internal(m) => {
                // Details go to the log; callers get a stable message.
                tracing::error!(error = %m, "internal error");
                Status::internal("internal error; see the config service log")
            }
        }
    }
}

impl From<auditstream_model::destination::FieldError> for ServiceError {
    fn from(e: auditstream_model::destination::FieldError) -> Self {
        ServiceError::InvalidArgument(e.to_string())
    }
}

pub fn invalid(field: &str, message: impl std::fmt::Display) -> ServiceError {
    ServiceError::InvalidArgument(format!("{field}: {message}"))
}
