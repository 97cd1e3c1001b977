"""`python -m cloud_sync ...` is `storebox-cloud ...`."""

from cloud_sync.cli import main

main()
