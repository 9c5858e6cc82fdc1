"""Entry point of the project-folder test: imports a module that only exists in the shipped folder."""

import sys

from pkg.helper import shout

print(shout(sys.argv[1]))
