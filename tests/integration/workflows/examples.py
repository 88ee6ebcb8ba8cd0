"""Developer-guide examples of every state type, path processing, intrinsics, Retry and Catch,
as ``(definition, inputs)``: the durable engine must finish each like the pure interpreter."""

from __future__ import annotations

from typing import Any

ADD = "arn:aws:states:::smokehouse:task:wf-add"
REJECT = "arn:aws:states:::smokehouse:task:wf-reject"
FLAKY = "arn:smokehouse:handler:wf-flaky"
SLOW = "arn:aws:states:::smokehouse:task:wf-slow"

PASS = {
    "Comment": "The Pass state example: a Result put at a ResultPath",
    "StartAt": "No-op",
    "States": {
        "No-op": {
            "Type": "Pass",
            "Result": {"x-datum": 0.381018, "y-datum": 622.2269926397355},
            "ResultPath": "$.coords",
            "End": True,
        }
    },
}

PATHS = {
    "Comment": "InputPath, Parameters (with the context object), ResultSelector, ResultPath, "
    "OutputPath around a Task",
    "StartAt": "Add",
    "States": {
        "Add": {
            "Type": "Task",
            "Resource": ADD,
            "InputPath": "$.numbers",
            "Parameters": {"a.$": "$.x", "b.$": "$.y", "who.$": "$$.Execution.Name"},
            "ResultSelector": {"total.$": "$.sum", "kind": "sum"},
            "ResultPath": "$.numbers.result",
            "OutputPath": "$.numbers",
            "Next": "Keep",
        },
        "Keep": {"Type": "Pass", "InputPath": "$.result", "ResultPath": "$.kept", "End": True},
    },
}

CHOICE = {
    "Comment": "The Choice state example: Not, NumericEquals, And, and a Default that fails",
    "StartAt": "ChoiceStateX",
    "States": {
        "ChoiceStateX": {
            "Type": "Choice",
            "Choices": [
                {"Not": {"Variable": "$.type", "StringEquals": "Private"}, "Next": "Public"},
                {"Variable": "$.value", "NumericEquals": 0, "Next": "ValueIsZero"},
                {
                    "And": [
                        {"Variable": "$.value", "NumericGreaterThanEquals": 20},
                        {"Variable": "$.value", "NumericLessThan": 30},
                    ],
                    "Next": "ValueInTwenties",
                },
            ],
            "Default": "DefaultState",
        },
        "Public": {"Type": "Pass", "Result": "public", "End": True},
        "ValueIsZero": {"Type": "Pass", "Result": "zero", "End": True},
        "ValueInTwenties": {"Type": "Pass", "Result": "twenties", "End": True},
        "DefaultState": {"Type": "Fail", "Error": "DefaultStateError", "Cause": "No Matches!"},
    },
}

WAIT = {
    "Comment": "Wait by Seconds, then until a TimestampPath in the past, then succeed",
    "StartAt": "wait_ten_seconds",
    "States": {
        "wait_ten_seconds": {"Type": "Wait", "Seconds": 1, "Next": "wait_until"},
        "wait_until": {"Type": "Wait", "TimestampPath": "$.expirydate", "Next": "Done"},
        "Done": {"Type": "Succeed"},
    },
}

PARALLEL = {
    "Comment": "The Parallel example: two lookups at once, one result array",
    "StartAt": "LookupCustomerInfo",
    "States": {
        "LookupCustomerInfo": {
            "Type": "Parallel",
            "End": True,
            "Branches": [
                {
                    "StartAt": "LookupAddress",
                    "States": {
                        "LookupAddress": {
                            "Type": "Task",
                            "Resource": ADD,
                            "Parameters": {"a.$": "$.street", "b": 1},
                            "End": True,
                        }
                    },
                },
                {
                    "StartAt": "LookupPhone",
                    "States": {
                        "LookupPhone": {
                            "Type": "Task",
                            "Resource": ADD,
                            "Parameters": {"a.$": "$.phone", "b": 2},
                            "End": True,
                        }
                    },
                },
            ],
        }
    },
}

MAP = {
    "Comment": "The Map example: ship each parcel, two at a time, with ItemSelector",
    "StartAt": "ExampleMapState",
    "States": {
        "ExampleMapState": {
            "Type": "Map",
            "ItemsPath": "$.detail.shipped",
            "ItemSelector": {
                "parcel.$": "$$.Map.Item.Value",
                "index.$": "$$.Map.Item.Index",
                "courier.$": "$.delivery-partner",
            },
            "MaxConcurrency": 2,
            "ItemProcessor": {
                "ProcessorConfig": {"Mode": "INLINE"},
                "StartAt": "Ship",
                "States": {
                    "Ship": {
                        "Type": "Task",
                        "Resource": ADD,
                        "Parameters": {"a.$": "$.parcel.weight", "b.$": "$.index"},
                        "ResultSelector": {"shipped.$": "$.sum"},
                        "End": True,
                    }
                },
            },
            "ResultPath": "$.detail.shipped",
            "End": True,
        }
    },
}

INTRINSICS = {
    "Comment": "Intrinsic functions in Parameters",
    "StartAt": "Functions",
    "States": {
        "Functions": {
            "Type": "Pass",
            "Parameters": {
                "greeting.$": "States.Format('Hello, {} {}', $.first, $.last)",
                "parsed.$": "States.StringToJson($.json)",
                "text.$": "States.JsonToString($.object)",
                "array.$": "States.Array($.first, 2, true)",
                "parts.$": "States.ArrayPartition($.numbers, 2)",
                "has.$": "States.ArrayContains($.numbers, 3)",
                "range.$": "States.ArrayRange(1, 9, 2)",
                "third.$": "States.ArrayGetItem($.numbers, 2)",
                "length.$": "States.ArrayLength($.numbers)",
                "unique.$": "States.ArrayUnique($.dupes)",
                "encoded.$": "States.Base64Encode($.first)",
                "decoded.$": "States.Base64Decode('aGVsbG8=')",
                "hash.$": "States.Hash($.first, 'SHA-256')",
                "merged.$": "States.JsonMerge($.object, $.more, false)",
                "sum.$": "States.MathAdd($.numbers[0], 41)",
                "split.$": "States.StringSplit($.csv, ',')",
                "uuid.$": "States.UUID()",
            },
            "End": True,
        }
    },
}

RETRY = {
    "Comment": "Retry a flaky task: two failures, backoff timers, then success",
    "StartAt": "Flaky",
    "States": {
        "Flaky": {
            "Type": "Task",
            "Resource": FLAKY,
            "Retry": [
                {
                    "ErrorEquals": ["FlakyError"],
                    "IntervalSeconds": 1,
                    "MaxAttempts": 3,
                    "BackoffRate": 1.0,
                }
            ],
            "End": True,
        }
    },
}

CATCH = {
    "Comment": "Catch a named error and a timeout, then compensate",
    "StartAt": "Reject",
    "States": {
        "Reject": {
            "Type": "Task",
            "Resource": REJECT,
            "Catch": [{"ErrorEquals": ["OrderRejected"], "ResultPath": "$.error", "Next": "Slow"}],
            "Next": "Slow",
        },
        "Slow": {
            "Type": "Task",
            "Resource": SLOW,
            "Parameters": {"sleep": 3, "step": 1, "total": 0},
            "TimeoutSeconds": 1,
            "Retry": [{"ErrorEquals": ["States.TaskFailed"], "MaxAttempts": 2}],
            "Catch": [
                {"ErrorEquals": ["States.Timeout"], "ResultPath": "$.timeout", "Next": "Compensate"}
            ],
            "End": True,
        },
        "Compensate": {"Type": "Pass", "End": True},
    },
}

JSONATA = {
    # docs.aws.amazon.com/step-functions/latest/dg/transforming-data.html, workflow-variables.html
    "Comment": "JSONata with variables, as the developer guide writes them today",
    "QueryLanguage": "JSONata",
    "StartAt": "Price",
    "States": {
        "Price": {
            "Type": "Task",
            "Resource": ADD,
            "Arguments": {"a": "{% $states.input.base %}", "b": "{% $states.input.extra %}"},
            "Assign": {"total": "{% $states.result.sum %}", "cuts": "{% $states.input.cuts %}"},
            "Next": "Size",
        },
        "Size": {
            "Type": "Choice",
            "Choices": [
                {"Condition": "{% $total > 10 %}", "Assign": {"size": "big"}, "Next": "Each"}
            ],
            "Default": "Small",
        },
        "Small": {"Type": "Pass", "Assign": {"size": "small"}, "Next": "Each"},
        "Each": {
            "Type": "Map",
            "Items": "{% $cuts %}",
            "ItemSelector": {
                "cut": "{% $states.context.Map.Item.Value %}",
                "index": "{% $states.context.Map.Item.Index %}",
            },
            "ItemProcessor": {
                "StartAt": "Label",
                "States": {
                    "Label": {
                        "Type": "Pass",
                        "Output": "{% $states.input.cut & ' #' & $string($states.input.index)"
                        " & ' (' & $size & ')' %}",
                        "End": True,
                    }
                },
            },
            "Assign": {"labels": "{% $states.result %}"},
            "Next": "Done",
        },
        "Done": {
            "Type": "Pass",
            "Output": {"total": "{% $total %}", "labels": "{% $labels %}"},
            "End": True,
        },
    },
}

VARIABLES = {
    "Comment": "Variables in a JSONPath machine: assigned from the input and a task's result, "
    "read by an intrinsic three states later",
    "StartAt": "Remember",
    "States": {
        "Remember": {
            "Type": "Pass",
            "Assign": {"who.$": "$.name", "greeting": "hello"},
            "Next": "Add",
        },
        "Add": {
            "Type": "Task",
            "Resource": ADD,
            "Parameters": {"a.$": "$.a", "b": 1},
            "Assign": {"sum.$": "$.sum"},
            "ResultPath": None,
            "Next": "Say",
        },
        "Say": {
            "Type": "Pass",
            "Parameters": {"text.$": "States.Format('{} {}: {}', $greeting, $who, $sum)"},
            "End": True,
        },
    },
}

#: name → (definition, [inputs]); executions are started for every input.
EXAMPLES: dict[str, tuple[dict[str, Any], list[Any]]] = {
    "pass": (PASS, [{"georefOf": "Home"}]),
    "jsonata": (
        JSONATA,
        [
            {"base": 7, "extra": 5, "cuts": ["brisket", "ribs"]},
            {"base": 1, "extra": 2, "cuts": ["wings"]},
        ],
    ),
    "variables": (VARIABLES, [{"name": "Ada", "a": 41}]),
    "paths": (PATHS, [{"numbers": {"x": 40, "y": 2}, "noise": True}]),
    "choice": (
        CHOICE,
        [
            {"type": "Public", "value": 5},
            {"type": "Private", "value": 0},
            {"type": "Private", "value": 25},
            {"type": "Private", "value": 99},
        ],
    ),
    "wait": (WAIT, [{"expirydate": "2016-03-14T01:59:00Z"}]),
    "parallel": (PARALLEL, [{"street": 10, "phone": 20}]),
    "map": (
        MAP,
        [
            {
                "delivery-partner": "UQS",
                "detail": {"shipped": [{"weight": w} for w in (5, 7, 11, 13, 17)]},
            }
        ],
    ),
    "intrinsics": (
        INTRINSICS,
        [
            {
                "first": "Ada",
                "last": "Lovelace",
                "json": '{"a": [1, 2]}',
                "object": {"k": 1},
                "more": {"k": 2, "m": 3},
                "numbers": [1, 2, 3, 4, 5],
                "dupes": [1, 1, 2, 2, 3],
                "csv": "a,b,c",
            }
        ],
    ),
    "retry": (RETRY, []),  # the input names a counter file, made per run
    "catch": (CATCH, [{"order": 7}]),
}
