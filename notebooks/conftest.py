"""nbval settings: no progress bars in the kernels nbval starts (they inherit this process's
environment with --nbval-current-env), so stderr noise never reaches a compared output."""

import os

os.environ["TQDM_DISABLE"] = "1"
