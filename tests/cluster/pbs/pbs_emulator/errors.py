"""PBS error numbers (pbs_errno) and their texts, and how commands turn them into exit codes.

Real PBS commands exit with ``pbs_errno & 0xff``: Unknown Job Id (15001) exits 153, Job has
finished (15139) exits 35, and so on; the captured reference confirms every code used here.
Texts are PBS's own, including the trailing space of "Unauthorized Request " that makes
``qalter: Unauthorized Request  1.vm`` show two spaces.
"""

from __future__ import annotations

UNKJOBID = 15001
PERM = 15007
SYSTEM = 15010  # what the client library reports when it cannot reach the server
UNKSIG = 15013
BADATVAL = 15014
MODATRRUN = 15015
BADSTATE = 15016
UNKQUE = 15018
BADUSER = 15023
NOSUP = 15029
PROTOCOL = 15031
UNKRESC = 15035
EXCQRESC = 15036
NORERUN = 15038
BADDEPEND = 15054
DUPLIST = 15055
UNKNODE = 15062
IVALREQ = 15004
HISTJOBID = 15139
MAXARRAY = 15160

MESSAGES = {
    UNKJOBID: "Unknown Job Id",
    PERM: "Unauthorized Request ",
    SYSTEM: "System error",
    UNKSIG: "Unknown signal name",
    BADATVAL: "Illegal attribute or resource value",
    MODATRRUN: "Cannot modify attribute while job running",
    BADSTATE: "Request invalid for state of job",
    UNKQUE: "Unknown queue",
    BADUSER: "Bad UID for job execution",
    NOSUP: "Feature/function not supported",
    PROTOCOL: "Premature end of message",
    UNKRESC: "Unknown resource",
    EXCQRESC: "Job exceeds queue resource limits",
    NORERUN: "Job cannot be rerun",
    BADDEPEND: "Invalid dependency",
    DUPLIST: "Duplicate entry in list ",
    UNKNODE: "Unknown node",
    IVALREQ: "Invalid request",
    HISTJOBID: "Job has finished",
    MAXARRAY: "Array job exceeds server or queue size limit",
}


class PbsError(Exception):
    """A request the server refuses: the pbs_errno and the text the client prints."""

    def __init__(self, code: int, aux: str = "") -> None:
        self.code = code
        self.aux = aux
        super().__init__(self.text)

    @property
    def text(self) -> str:
        """PBS's message, with the attribute or resource it is about, as pbs_geterrmsg()."""
        base = MESSAGES.get(self.code, f"Error {self.code}")
        return f"{base} {self.aux}" if self.aux else base


def exit_code(code: int) -> int:
    """The exit status a PBS command uses for a pbs_errno."""
    return code & 0xFF
