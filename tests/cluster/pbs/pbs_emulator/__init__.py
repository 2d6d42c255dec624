"""A PBS (OpenPBS 23.06) emulator for tests: the client commands plus one small server.

Nothing here is a scheduler anyone should use. It exists so that hpcbridge's PBS backend can be
tested against commands that answer the way real OpenPBS answers (the captured outputs in
``shared/pbs-reference``), on machines where OpenPBS cannot be installed.

Layout, following the real split between client commands and pbs_server/pbs_sched/pbs_mom:

* ``cli`` and ``cmd_*``: the commands (qsub, qstat, ...). They parse options, validate what real
  clients validate, send one request to the server and format its answer.
* ``client``: one request/answer over a Unix socket, starting the server lazily.
* ``server``: the long-lived process: job table, scheduling, running jobs (``mom``), logs.
* ``model``, ``status``, ``resources``, ``units``, ``ids``: the job model and PBS value syntax.
* ``output``: PBS's JSON, ``qstat -f`` text and DSV writers.

Standard library only: the commands run under whatever ``python3`` is on PATH.
"""

PBS_VERSION = "23.06.06"
