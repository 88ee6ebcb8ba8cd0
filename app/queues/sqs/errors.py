"""SQS's errors as its JSON protocol answers them: the modeled exception in ``__type``
(``com.amazonaws.sqs#QueueDoesNotExist``, so ``client.exceptions.QueueDoesNotExist`` matches)
and the Query-era code in ``x-amzn-query-error`` (what boto3 reports as ``Error.Code``, e.g.
``AWS.SimpleQueueService.NonExistentQueue``). Wording as SQS's."""

from __future__ import annotations

from app.aws.errors import AwsError

_NAMESPACE = "com.amazonaws.sqs#"


def sqs_error(shape: str, message: str, query_code: str | None = None) -> AwsError:
    return AwsError(_NAMESPACE + shape, message, 400, query_code=query_code or shape)


def queue_does_not_exist() -> AwsError:
    return sqs_error(
        "QueueDoesNotExist",
        "The specified queue does not exist.",
        "AWS.SimpleQueueService.NonExistentQueue",
    )


def queue_name_exists(name: str) -> AwsError:
    return sqs_error(
        "QueueNameExists",
        f"A queue already exists with the same name and a different value for attribute(s) "
        f"on queue {name}",
        "QueueAlreadyExists",
    )


def invalid_parameter(message: str) -> AwsError:
    return sqs_error("InvalidParameterValueException", message, "InvalidParameterValue")


def invalid_attribute_name(name: str) -> AwsError:
    return sqs_error("InvalidAttributeName", f"Unknown Attribute {name}.")


def invalid_attribute_value(message: str) -> AwsError:
    return sqs_error("InvalidAttributeValue", message)


def invalid_contents(message: str) -> AwsError:
    return sqs_error("InvalidMessageContents", message)


def receipt_invalid(handle: str) -> AwsError:
    return sqs_error(
        "ReceiptHandleIsInvalid",
        f'The input receipt handle "{handle}" is not a valid receipt handle.',
    )


def not_in_flight() -> AwsError:
    return sqs_error(
        "MessageNotInflight",
        "The message referred to isn't in flight.",
        "AWS.SimpleQueueService.MessageNotInflight",
    )


def purge_in_progress(name: str) -> AwsError:
    return sqs_error(
        "PurgeQueueInProgress",
        f"Only one PurgeQueue operation on {name} is allowed every 60 seconds.",
        "AWS.SimpleQueueService.PurgeQueueInProgress",
    )


def empty_batch() -> AwsError:
    return sqs_error(
        "EmptyBatchRequest",
        "There should be at least one SendMessageBatchRequestEntry in the request.",
        "AWS.SimpleQueueService.EmptyBatchRequest",
    )


def too_many_entries(count: int) -> AwsError:
    return sqs_error(
        "TooManyEntriesInBatchRequest",
        f"Maximum number of entries per request are 10. You have sent {count}.",
        "AWS.SimpleQueueService.TooManyEntriesInBatchRequest",
    )


def ids_not_distinct() -> AwsError:
    return sqs_error(
        "BatchEntryIdsNotDistinct",
        "Two or more batch entries in the request have the same Id.",
        "AWS.SimpleQueueService.BatchEntryIdsNotDistinct",
    )


def invalid_batch_id() -> AwsError:
    return sqs_error(
        "InvalidBatchEntryId",
        "A batch entry id can only contain alphanumeric characters, hyphens and underscores. "
        "It can be at most 80 letters long.",
        "AWS.SimpleQueueService.InvalidBatchEntryId",
    )


def batch_too_long(size: int, limit: int) -> AwsError:
    return sqs_error(
        "BatchRequestTooLong",
        f"Batch requests cannot be longer than {limit} bytes. You have sent {size} bytes.",
        "AWS.SimpleQueueService.BatchRequestTooLong",
    )


def unsupported(message: str) -> AwsError:
    return sqs_error("UnsupportedOperation", message, "AWS.SimpleQueueService.UnsupportedOperation")


def resource_not_found(message: str) -> AwsError:
    return sqs_error("ResourceNotFoundException", message, "ResourceNotFoundException")
