"""Combine what the earlier tasks returned (passed in through XCom templates) into one line."""

import sys

from titan_runtime import task

extracted, diamond = int(sys.argv[1]), int(sys.argv[2])
print(f"report: extracted total {extracted}, diamond total {diamond}, together {extracted + diamond}")
task.set_result(extracted + diamond)
