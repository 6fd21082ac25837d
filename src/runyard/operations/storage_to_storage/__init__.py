"""The `storage-to-storage` type: files copied (or moved) between local folders and S3 under templated names."""
