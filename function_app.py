"""The Functions app: one blueprint per service, nothing else.

Drone delivery (Azure Architecture Center, Choreography pattern): Ingestion, Package, Drone
Scheduler and Delivery choreograph each delivery over Service Bus with no orchestrator;
Notifications listens on Event Grid downstream of it.
"""

import azure.functions as func

from delivery.handlers import bp as delivery
from drone_scheduler.handlers import bp as drone_scheduler
from ingestion.handlers import bp as ingestion
from notifications.handlers import bp as notifications
from package.handlers import bp as package

app = func.FunctionApp(http_auth_level=func.AuthLevel.FUNCTION)

app.register_functions(ingestion)
app.register_functions(package)
app.register_functions(drone_scheduler)
app.register_functions(delivery)
app.register_functions(notifications)
