"""AWS-compatible JSON protocol endpoint (EventBridge, Step Functions) with SigV4 verification.

Register operations on :data:`registry` (see :mod:`app.aws.operations`; their parameters are
checked against botocore's models by :mod:`app.aws.validate`), mount :func:`aws_router` with the
app's Settings (they reach handlers on the :class:`AwsCall`), raise :class:`AwsError` from
handlers.
"""

from app.aws.errors import AwsError
from app.aws.operations import AwsCall, AwsOperations, registry
from app.aws.protocol import aws_router

__all__ = ["AwsCall", "AwsError", "AwsOperations", "aws_router", "registry"]
