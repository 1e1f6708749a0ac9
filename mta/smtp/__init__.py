"""SMTP: the protocol core (no I/O), shared by the daemon and sendmail -bs."""
