"""``python -m lute_ipc bench``: a comparative benchmark of lute_ipc against the alternatives.

One job per module:

* :mod:`.options`    the command-line arguments, the scenarios, contenders and run sizes
* :mod:`.payloads`   the messages and byte streams every contender moves
* :mod:`.lute_algorithm`  LUTE's framing and socket reader, re-expressed from DESIGN.md
* :mod:`.timing`     interleaved rounds, medians and spread
* :mod:`.machine`    the run's context: CPU, versions, commit, load
* :mod:`.decode`     scenario (a): in-memory decoders
* :mod:`.task_side`  what the Task process does for each contender (forked or spawned)
* :mod:`.control`    the control channel between a trial and its Task process
* :mod:`.forked`     a forked Task process
* :mod:`.transports` scenarios (b) and (c): the Executor side of each contender
* :mod:`.pipes`      scenario (d): a Task subprocess writing pickles mixed with text
* :mod:`.pipe_task`  ``python -m lute_ipc.bench.pipe_task``: that Task subprocess
* :mod:`.worker`     ``python -m lute_ipc.bench.worker``: runs trials for one core (Cython or pure)
* :mod:`.runner`     starts the workers and sends them trials
* :mod:`.report`     the console table and the JSON document
* :mod:`.plot`       the PNG (matplotlib, optional)
* :mod:`.markdown`   ``docs/benchmarks.md``
* :mod:`.main`       :func:`~lute_ipc.bench.main.run`, called by the CLI

Importing this package imports nothing else.
"""
