-- Recency, frequency and monetary value per customer as of the run date, scored 1–5 by quintile
-- (macros/rfm.sql, shared with the look-back of int_customer_rfm_scored_previous).
{{ rfm_scores(ref('int_sales_lines'), ref('int_as_of_date')) }}
