-- The run date of the point-in-time marts (RFM, penetration, product and category momentum):
-- the `as_of_date` var when given, else the latest invoice day in gold.
with sales as (

    select max(invoice_date) as latest_invoice_date
    from {{ ref('stg_sales_lines') }}

)

select
    {% if var('as_of_date') -%}
    cast('{{ var("as_of_date") }}' as date) as as_of_date,
    {%- else -%}
    latest_invoice_date as as_of_date,
    {%- endif %}
    latest_invoice_date
from sales
