//! OCI image layout and docker-archive export and import.
