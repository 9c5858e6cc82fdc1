"""Count the words of one part of a small built-in corpus."""

import sys

from titan_runtime import task

CORPUS = {
    "DATA_PART_1": "the quick brown fox",
    "DATA_PART_2": "jumps over the lazy dog",
    "DATA_PART_3": "titan runs jobs on workers",
    "DATA_PART_4": "and reduces what they found",
}

part = sys.argv[1]
words = len(CORPUS[part].split())
print(f"{part}: {words} words")
task.set_result({"part": part, "words": words})
