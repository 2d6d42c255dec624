"""Documents made from the ledger: usage reports, grant reports and their charts."""
