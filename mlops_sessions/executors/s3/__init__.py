"""S3 engine: fetch objects (a served model, s3:// data inputs) with checksums and retries."""
