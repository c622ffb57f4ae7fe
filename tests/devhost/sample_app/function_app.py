"""Sample function app for devhost's tests: one blueprint per trigger kind, as the real app is
laid out. Every function records what it received in the Azurite table named by the
RECORD_TABLE setting (PartitionKey = the test's tag), so tests can check it through the SDK."""

import azure.functions as func
from handlers import blobs, eventgrid, http, servicebus

app = func.FunctionApp(http_auth_level=func.AuthLevel.FUNCTION)
for blueprint in (http.bp, servicebus.bp, eventgrid.bp, blobs.bp):
    app.register_functions(blueprint)
