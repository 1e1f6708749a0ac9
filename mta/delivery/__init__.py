"""Delivery: what happens to a queue entry after it is safely queued.

The layer between the queue and the mailers, split as Postfix splits qmgr from local/smtp:
  schedule   which entries, and when: selection (-qI/-qR/-qS/-qQ), QueueSortOrder, limits,
             parallel runners, load-average checks, queue groups (``sendmail -q``, ``-qTIME``)
  attempt    one delivery attempt of one entry under its flock: route, hand to mailers, log,
             bounce, keep or remove
  handoff    which mailer module runs for which recipients (SMTP per host, programs, local, file)
  render     what a mailer is given: headers for its F= flags, $g, argv, DSN parameters
  mode       DeliveryMode (interactive, background, queue-only, defer): decided here, once
Imports go one way: fronts -> modes -> daemon/delivery -> submit/router -> queue/maps/config.
"""
