"""The Functions app: one blueprint per service, nothing else.

Drone delivery (Azure Architecture Center, Choreography pattern): Ingestion, Package, Drone
Scheduler and Delivery choreograph each delivery over Service Bus with no orchestrator;
Notifications listens on Event Grid downstream of it.

Payment-file pipeline (a bank's weekly file): FileValidator → FileAdaptor → FileCreator, handing
on by Service Bus, with compensation when a later step fails.

Remediation: every dead letter of both workloads reaches queue ``deadletter``; one policy
retries it where it failed, compensates, or parks it for a person.
"""

import azure.functions as func

from delivery.handlers import bp as delivery
from drone_scheduler.handlers import bp as drone_scheduler
from file_pipeline.handlers import bp as file_pipeline
from ingestion.handlers import bp as ingestion
from notifications.handlers import bp as notifications
from package.handlers import bp as package
from remediation.handlers import bp as remediation

app = func.FunctionApp(http_auth_level=func.AuthLevel.FUNCTION)

app.register_functions(ingestion)
app.register_functions(package)
app.register_functions(drone_scheduler)
app.register_functions(delivery)
app.register_functions(notifications)
app.register_functions(file_pipeline)
app.register_functions(remediation)
