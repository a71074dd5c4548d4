//! Integration and end-to-end scenarios live in `tests/`; each starts the real services and
//! real dependencies it needs (see `auditstream-testkit`).
