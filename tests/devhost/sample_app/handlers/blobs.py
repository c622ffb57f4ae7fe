import hashlib
import logging

import azure.functions as func
import azurefunctions.extensions.bindings.blob as blob_sdk
from azure.core import MatchConditions

from .records import record

bp = func.Blueprint()


@bp.blob_trigger(arg_name="blob", path="uploads/{tag}/{name}", connection="Storage")
def blob_uploads(blob: func.InputStream) -> None:
    content = blob.read()
    tag = blob.name.split("/")[1]
    record(tag, "blob_uploads", name=blob.name, length=blob.length, uri=blob.uri,
           sha=hashlib.sha256(content).hexdigest(), content=content.decode("utf-8", "replace"),
           etag=(blob.blob_properties or {}).get("ETag"))
    if content.startswith(b"fail"):
        raise RuntimeError("asked to fail")
    logging.info("blob %s (%d bytes)", blob.name, blob.length)


# An SDK-type binding: the function gets a BlobClient and reads the content itself, in ranges
# bound to the ETag it saw, so nothing is ever held whole (neither by the host nor here).
RANGE = 1 << 20


@bp.blob_trigger(arg_name="client", path="sdkuploads/{tag}/{name}", connection="AzureWebJobsStorage")
def blob_clients(client: blob_sdk.BlobClient) -> None:
    props = client.get_blob_properties()
    digest, size, head = hashlib.sha256(), 0, b""
    while size < props.size:
        piece = client.download_blob(offset=size, length=min(RANGE, props.size - size), etag=props.etag,
                                     match_condition=MatchConditions.IfNotModified).readall()
        digest.update(piece)
        head = head or piece[:64]
        size += len(piece)
    tag = client.blob_name.split("/")[0]
    record(tag, "blob_clients", type=type(client).__module__ + "." + type(client).__name__,
           container=client.container_name, name=client.blob_name, etag=props.etag, length=size,
           sha=digest.hexdigest(), head=head.decode("utf-8", "replace"))
    if head.startswith(b"fail"):
        raise RuntimeError("asked to fail")
