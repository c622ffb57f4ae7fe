"""ISO 20022 ExternalStatusReason1Code values used by the payment-file pipeline.

Every rejection the pipeline emits (per transaction or per file) carries one of
these codes plus a human-readable description, and ends up in the pain.002
status report as ``StsRsnInf/Rsn/Cd``.

Mapping of NACHA (ACH) problems onto ISO codes
-----------------------------------------------
NACHA has no ISO reason codes of its own for *file* errors (R-codes are for
returns, not for rejecting an origination file), so the validator maps them:

====================================================  =====  ==========================================
NACHA problem                                          code   why
====================================================  =====  ==========================================
record not 94 chars, unknown record type, records      FF01   file format incomplete or invalid
out of order (1 -> 5 -> 6/7 -> 8 -> 9), missing
file header/control, batch header/control mismatch
(service class, company id, batch number), bad
padding (record count not a multiple of 10, filler
not all 9s), file-control block count wrong,
non-numeric numeric field, IAT batches (unsupported)
batch control entry/addenda count != actual            AM20   NbOfTxs at payment-information level
batch control total debit/credit != actual             AM17   control sum at payment-information level
batch control entry hash != actual                     AM10   control sum (of routing ids) mismatch
file control batch count or entry/addenda count        AM19   NbOfTxs at group level
file control total debit/credit != actual              AM16   control sum at group level
file control entry hash != actual                      AM10   control sum (of routing ids) mismatch
entry RDFI routing check digit (3-7-1) wrong, or not   RC10   creditor clearing-system member id invalid
in the ABA directory
entry amount zero on a live (non-prenote) entry        AM01   amount is zero
debit, prenote or non-DDA/SAV entries in a             AG03   transaction type not supported
credit-transfer file
trace number repeated within the file                  DU04   end-to-end id (the trace) not unique
====================================================  =====  ==========================================

pain.001 header controls: group CtrlSum -> AM16, group NbOfTxs -> AM19,
payment-block CtrlSum -> AM17, payment-block NbOfTxs -> AM20; AM10 is kept
for control sums that are neither (NACHA entry hash).
"""

from __future__ import annotations

from enum import Enum


class IsoReason(str, Enum):  # noqa: UP042 - StrEnum would change str() of members, which messages use
    """ISO 20022 ExternalStatusReason1Code (subset). ``value`` is the 4-char code."""

    description: str

    def __new__(cls, code: str, description: str) -> "IsoReason":
        obj = str.__new__(cls, code)
        obj._value_ = code
        obj.description = description
        return obj

    @classmethod
    def of(cls, code: str) -> "IsoReason":
        """The member whose 4-char code is ``code`` (ValueError if there is none)."""
        member = cls._value2member_map_.get(code)
        if not isinstance(member, IsoReason):
            raise ValueError(f"{code!r} is not an ISO reason code of this bank")
        return member

    # accounts
    AC01 = ("AC01", "Account number is invalid or missing")
    AC02 = ("AC02", "Debtor account number invalid or missing")
    AG03 = ("AG03", "Transaction type not supported/authorized on this account")
    # amounts and currency
    AM01 = ("AM01", "Specified message amount is equal to zero")
    AM02 = ("AM02", "Specific transaction/message amount is greater than allowed maximum")
    AM03 = ("AM03", "Specified message amount is in a non processable currency outside of existing agreement")
    AM10 = ("AM10", "Sum of instructed amounts does not equal the control sum")
    AM11 = ("AM11", "Transaction currency is invalid or missing")
    AM12 = ("AM12", "Amount is invalid or missing")
    AM14 = ("AM14", "Transaction amount exceeds limits agreed between bank and client")
    AM16 = ("AM16", "Control Sum at the Group level is invalid")
    AM17 = ("AM17", "Control Sum at the Payment Information level is invalid")
    AM18 = ("AM18", "Number of transactions is invalid or missing")
    AM19 = ("AM19", "Number of transactions at the Group level is invalid or missing")
    AM20 = ("AM20", "Number of transactions at the Payment Information level is invalid")
    # parties
    BE22 = ("BE22", "Creditor name is missing")
    # content
    CH03 = ("CH03", "Value in Requested Execution Date is too far in the future")
    CH04 = ("CH04", "Value in Requested Execution Date is too far in the past")
    CH16 = ("CH16", "Content is incorrect")
    CH20 = ("CH20", "Number of decimal points not compatible with the currency")
    # dates
    DT01 = ("DT01", "Invalid date")
    DT03 = ("DT03", "Invalid non bank processing date (weekend or public holiday)")
    DT05 = ("DT05", "Received after agreed processing cut-off")
    # duplicates
    DU01 = ("DU01", "Message Identification is not unique")
    DU02 = ("DU02", "Payment Information Block is not unique")
    DU04 = ("DU04", "End To End ID is not unique")
    # file format
    FF01 = ("FF01", "File Format incomplete or invalid")
    FF08 = ("FF08", "End to End Id missing or invalid")
    # narrative
    NARR = ("NARR", "Reason is provided as narrative information in the additional reason information")
    # bank identifiers
    RC01 = ("RC01", "Bank identifier code specified in the message has an incorrect format or is unknown")
    RC10 = ("RC10", "Creditor ClearingSystemMember identifier is invalid or missing")


#: NACHA problem kind -> ISO code (see the module docstring). Keys are stable
#: identifiers used by :mod:`file_pipeline.formats.nacha` and the file rules.
NACHA_ERROR_CODES: dict[str, IsoReason] = {
    "record-length": IsoReason.FF01,
    "record-type": IsoReason.FF01,
    "record-order": IsoReason.FF01,
    "addenda-type": IsoReason.FF01,
    "missing-record": IsoReason.FF01,
    "header-control-mismatch": IsoReason.FF01,
    "padding": IsoReason.FF01,
    "block-count": IsoReason.FF01,
    "numeric-field": IsoReason.FF01,
    "unsupported-sec": IsoReason.FF01,
    "batch-entry-count": IsoReason.AM20,
    "batch-totals": IsoReason.AM17,
    "batch-entry-hash": IsoReason.AM10,
    "file-batch-count": IsoReason.AM19,
    "file-entry-count": IsoReason.AM19,
    "file-totals": IsoReason.AM16,
    "file-entry-hash": IsoReason.AM10,
    "routing-check-digit": IsoReason.RC10,
    "routing-unknown": IsoReason.RC10,
    "zero-amount": IsoReason.AM01,
    "transaction-code": IsoReason.AG03,
    "duplicate-trace": IsoReason.DU04,
}
