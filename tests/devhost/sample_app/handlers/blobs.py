import hashlib
import logging

import azure.functions as func

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
