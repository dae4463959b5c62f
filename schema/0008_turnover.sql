-- 0008: mayfly turnover. expires_at (0001) is now set at each binding of a mayfly;
-- these say how its turnovers went. turnover_to is the host reserved for the rebirth
-- while a turnover is under way (running -> stopping -> pending -> binding -> running):
-- written in the transaction that starts the death, so a restarted lscd finds the
-- turnover (and holds the reservation again) instead of forgetting it.
ALTER TABLE servers
        ADD COLUMN turnovers   bigint NOT NULL DEFAULT 0 CHECK (turnovers >= 0),
        ADD COLUMN postponed   bigint NOT NULL DEFAULT 0 CHECK (postponed >= 0),
        ADD COLUMN renewals    integer NOT NULL DEFAULT 0 CHECK (renewals >= 0),
        ADD COLUMN turnover_to text;
