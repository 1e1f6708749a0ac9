"""sendmail-py: one core library behind the sendmail command suite.

The call chain follows a message: submit -> queue -> delivery (schedule, attempt) -> router -> mailers -> log.
"""

# The version we announce where sendmail announces its own ($v): greetings, Received headers.
VERSION = "8.18.1"
PACKAGE_VERSION = "0.1.0"
