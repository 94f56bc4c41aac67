"""The ranking statistics: counts, BWS intervals, Bradley-Terry, agreement, position bias, the ranking table."""
