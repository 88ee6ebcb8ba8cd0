"""AWS-compatible JSON protocol endpoint (EventBridge, Step Functions) with SigV4 verification.

Register operations on :data:`registry` (see :mod:`app.aws.operations`), mount
:func:`aws_router` on the app, raise :class:`AwsError` from handlers.
"""

from app.aws.errors import AwsError
from app.aws.operations import AwsCall, AwsOperations, registry
from app.aws.protocol import aws_router

__all__ = ["AwsCall", "AwsError", "AwsOperations", "aws_router", "registry"]
