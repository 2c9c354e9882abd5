-- The one failing data test: order 8 has a negative payment. Everything downstream of `orders` is skipped.
select order_id, amount from {{ ref('orders') }} where amount < 0
