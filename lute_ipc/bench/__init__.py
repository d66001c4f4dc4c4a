"""lute_ipc's benchmarks, the one home of their measuring code (shipped, so it works from a wheel).

``python -m lute_ipc bench`` (:mod:`.main`) compares lute_ipc with the alternatives, per
message shape; ``python -m lute_ipc.bench.codec_report``, ``.splitter_report``,
``.latency`` and ``.callgrind`` are the focused reports. ``benchmarks/`` in the repository
holds the pytest-benchmark suite and thin scripts calling these modules.

One job per module:

* :mod:`.options`    the command-line arguments, the scenarios, contenders and run sizes
* :mod:`.payloads`   the message shapes and byte streams every contender moves
* :mod:`.targets`    the speed targets, as same-run ratios printed next to the measured ones
* :mod:`.lute_algorithm`  LUTE's framing and socket reader, re-expressed from its behaviour (docs/MIGRATION.md)
* :mod:`.lute_lcls`  the real LUTE (``lute-lcls``), imported without its side effects
* :mod:`.timing`     interleaved rounds, medians, spread and ratios (the one timing harness)
* :mod:`.codec_report`     the frame codec in memory per shape, vs pickle
* :mod:`.splitter_report`  the pipe stream splitter
* :mod:`.latency`    write-to-read latency at a fixed rate
* :mod:`.callgrind`  deterministic instruction counts of the decode (valgrind)
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
