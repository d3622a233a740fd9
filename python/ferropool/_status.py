"""A task outcome's status, as the engine and the workers send it (the same
numbers as ``protocol::ResultStatus`` in the Rust engine). A module of its
own so that a worker can use them without importing what the parent needs
to turn outcomes into exceptions (see ``_outcomes``)."""

OK = 0
RAISED = 1
RAISED_UNPICKLABLE = 2
ENCODING_ERROR = 3
WORKER_LOST = 4
POOL_BROKEN = 5
TIMED_OUT = 6
LOCAL_ERROR = 7  # the exception stays with the Python handle (see pool.IMapIterator)
CANCELLED = 8  # cancelled before it was sent to a worker
# A result whose large buffers travel out of band (see _pickling.dumps_result).
OK_OUT_OF_BAND = 9
