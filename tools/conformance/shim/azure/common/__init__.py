"""Stand-in for the retired ``azure-common`` package: the suite imports two exception names."""


class AzureHttpError(Exception):
    pass


class AzureConflictHttpError(AzureHttpError):
    pass
