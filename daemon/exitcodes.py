"""Process exit codes (sysexits.h), shared by every command and the systemd unit.

0 clean stop or success; 1 anything else; 69 a required service unreachable at a one-shot
command; 75 a refresh held back by a guard (try again later); 78 configuration or
authentication error (the unit's RestartPreventExitStatus, so a bad config does not loop).
"""

OK = 0
FAILURE = 1
USAGE = 64  # EX_USAGE: bad arguments
UNAVAILABLE = 69  # EX_UNAVAILABLE
TEMPFAIL = 75  # EX_TEMPFAIL
CONFIG = 78  # EX_CONFIG
