"""Delivery: the saga participant that joins the Package and Drone outcomes of each delivery,
announces the result on Event Grid, and asks for compensation when one side failed."""
