"""Stand-in for ``azure.mgmt.servicebus.models``: the suite names access rights for its
authorization-rule preparers (rights the emulator does not enforce)."""

from enum import StrEnum


class AccessRights(StrEnum):
    manage = "Manage"
    send = "Send"
    listen = "Listen"
