"""An S3-compatible server for the tests (filled in by the S3 lake work)."""
