"""Writes a blob and reads it back through a storage connection string, as a workload would.

Usage: blob_roundtrip.py CONTAINER  (the connection string comes from $CONNECTION_STRING)
Prints the text read back.
"""
import os
import sys

from azure.storage.blob import BlobServiceClient

container = sys.argv[1]
service = BlobServiceClient.from_connection_string(os.environ["CONNECTION_STRING"])
blob = service.get_blob_client(container=container, blob="citystack-check.txt")
blob.upload_blob(b"written through the projected binding", overwrite=True)
print(blob.download_blob().readall().decode())
