import sys

from sparse_exp.report import main

sys.exit(main())
