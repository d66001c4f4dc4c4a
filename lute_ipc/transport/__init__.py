"""The socket transport, one module per technology: raw stream sockets, ZeroMQ, the session
protocol between lute_ipc peers, and the batching policy (plain, sans-IO code).
:class:`lute_ipc.sockets.SocketCommunicator` is the facade over it; ``docs/ARCHITECTURE.md``
draws the whole picture.

The link interface
------------------
:class:`~lute_ipc.transport.writer.FrameWriter` sends through a *link*, whatever its
technology. A link provides:

``pid`` (int attribute)
    The process that created the link. The writer never uses a link from another process:
    in a forked child it makes a new one (its ``relink`` factory) and leaves the parent's alone.
``max_message`` (``Optional[int]`` attribute)
    The peer's frame limit in payload octets once known (a session learns it in the
    handshake), else None. The writer refuses larger messages before sending anything.
``queues_in_process`` (bool attribute)
    True when ``send`` may leave the octets queued in this process (ZeroMQ's I/O thread)
    rather than in the kernel: LUTE's per-message ``clear_communicator()`` then waits for the
    peer's confirmation (a process ending with ``os._exit`` would lose them silently).
``open() -> None``
    Connect now. Raises :class:`~lute_ipc.errors.AuthenticationError` when the peer refuses
    the key (or the key is missing), :class:`~lute_ipc.errors.TransportError` when the peer
    is unreachable. Idempotent; ``send`` opens a link that is not open.
``send(pieces: List[buffer], messages: int) -> None``
    Hand over ``pieces`` (buffers, in order) holding ``messages`` whole frames. Waits for
    room as long as the peer is alive and slow (backpressure). Raises TransportError when the
    octets cannot be handed over, or when something sent earlier is known to be lost; the
    message names the number of messages concerned.
``confirm(timeout: Optional[float]) -> None``
    Return once the peer acknowledged every message sent (``None``: wait as long as the peer
    lives; a ZeroMQ session gives up once the Executor sent nothing for ``linger`` seconds;
    ``0``: do not wait, only raise what is already known). TransportError names the
    messages not confirmed or refused. Links without acknowledgements return at once.
``close() -> None``
    Confirm (as ``confirm(None)``), then release everything; TransportError as for ``confirm``,
    raised after releasing.

``hand_over(timeout: Optional[float]) -> None`` (optional; links that ``queues_in_process``)
    LUTE's per-message ``clear_communicator()``: wait for the confirmation as the link sees
    fit (ZeroMQ session: while the Executor is heard from, then return without raising; a
    ``timeout`` makes it ``confirm(timeout)``). Without it the writer calls ``confirm``.
``lost_unconfirmed`` (int attribute; optional)
    Messages sent on sessions that ended (lost or closed) before confirming them, in all: the
    writer's ``close()`` adds them to the messages its failed sends dropped, and names the sum.
``exit_timeout`` (``Optional[float]`` attribute; optional)
    Seconds the confirmation at interpreter exit waits (raw session links: ``linger``);
    absent or None: ``confirm(None)``.
``rest() -> None`` (optional; raw stream links)
    Close the connection now, everything sent being handed over (PlainLink: after every send)
    or confirmed (SessionLink: at exit); the next ``send`` opens a new one.

Implementations: :class:`~lute_ipc.transport.raw_link.SessionLink` (raw sockets to a
lute_ipc Executor), :class:`~lute_ipc.transport.raw_link.PlainLink` (raw sockets to LUTE's
Executor), and the ZeroMQ link.
"""
