"""Dora grids: `dora grid <family>.<grid> [--dry_run] [--init]` lists or schedules their XPs."""
