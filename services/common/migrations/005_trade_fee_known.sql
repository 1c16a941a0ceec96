-- A fill whose fee the exchange did not report is recorded as such, not as a fee of zero:
-- tax reports must be able to tell the two apart.
ALTER TABLE trades ADD COLUMN fee_known boolean NOT NULL DEFAULT true;
ALTER TABLE orders ADD COLUMN fee_known boolean NOT NULL DEFAULT true;
