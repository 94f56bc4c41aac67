"""The vote store and ballots: SQLite store, ballot rules, screen layouts, juror tokens, votes CSV."""
