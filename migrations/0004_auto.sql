-- Auto-routing: the tier `tokenroute/auto` chose and the score behind it.

ALTER TABLE usage ADD COLUMN tier TEXT;
ALTER TABLE usage ADD COLUMN score REAL;
