"""Kestrel Mobile's features: what we know about a customer, as of any moment.

`tarmac apply` registers these; `tarmac features materialize` copies the latest values online;
`tarmac serve` answers POST /features. Each view's rows are dated at the END of the day they
summarise (`day`), so a training row at time t never sees that day's later events.
"""

from tarmac.features import (
    Entity,
    Feature,
    FeatureService,
    FeatureView,
    Float64,
    Int64,
    String,
    on_demand,
    sql,
)

customer = Entity("customer", join_keys=["customer_id"], description="a Kestrel subscriber")

profile = FeatureView(
    name="customer_profile", entities=[customer],
    source=sql("""
        SELECT customer_id, updated_at, plan,
               upper(region[1]) || lower(region[2:]) AS region,
               date_diff('day', signup_date, updated_at) AS tenure_days
        FROM customers"""),
    timestamp="updated_at",  # a CRM row is true from its update on, until the next one
    features=[Feature("plan", String, "subscription plan"),
              Feature("region", String, "home region"),
              Feature("tenure_days", Int64, "days since signup")],
    description="who the customer is, from the CRM",
)

# Windowed counts over sparse events. A sum over the last N days changes on the days a customer
# is active and on the days that activity leaves the window, so the views below emit a row at
# both (the value at any moment is the latest row's: point-in-time exact), plus weekly
# checkpoints for every customer from signup (or the first day of data) to the newest day of
# data: a customer quiet for months, or never active, reads 0 (present, fresh), not a row past
# its ttl (stale) or no row at all (missing), both served as null.
WINDOWED = """
    WITH daily AS ({daily}),
    span AS (SELECT min(day) AS first, max(day) AS last FROM daily),
    since AS (
        SELECT customer_id, min(day) AS day FROM daily GROUP BY ALL
        UNION ALL
        SELECT customer_id, greatest(min(signup_date) + INTERVAL 1 DAY, any_value(first))
        FROM customers, span GROUP BY ALL),
    points AS (
        SELECT customer_id, day FROM daily
        UNION SELECT customer_id, day + INTERVAL {days} DAY FROM daily
        UNION SELECT customer_id, unnest(generate_series(min(day), any_value(last),
                                                         INTERVAL 7 DAY))
              FROM since, span GROUP BY customer_id
        UNION SELECT customer_id, last FROM since, span)
    SELECT customer_id, day, {sums}
    FROM points LEFT JOIN daily USING (customer_id, day)
    WHERE day <= (SELECT last FROM span)
    WINDOW w AS (PARTITION BY customer_id ORDER BY day
                 RANGE BETWEEN INTERVAL {before} DAYS PRECEDING AND CURRENT ROW)"""


def windowed(daily: str, days: int, sums: str) -> str:
    """The SQL of a view summing ``daily`` (customer_id, day, counts) over ``days`` days."""
    return WINDOWED.format(daily=daily, days=days, before=days - 1, sums=sums)


orders = FeatureView(
    name="customer_orders", entities=[customer], ttl="90d",
    source=sql(windowed("""
        SELECT customer_id, date_trunc('day', ordered_at) + INTERVAL 1 DAY AS day,
               count(*) AS n, sum(amount) AS spend
        FROM orders WHERE status = 'completed' GROUP BY ALL""", 90, """
        CAST(coalesce(sum(n) OVER w, 0) AS BIGINT) AS orders_90d,
        coalesce(sum(spend) OVER w, 0.0) AS spend_90d""")),
    timestamp="day",
    features=[Feature("orders_90d", Int64, "completed orders in the last 90 days"),
              Feature("spend_90d", Float64, "spend on completed orders, last 90 days")],
)

clicks = FeatureView(
    name="customer_clicks", entities=[customer], ttl="30d",
    source=sql(windowed("""
        SELECT customer_id, date_trunc('day', event_time) + INTERVAL 1 DAY AS day,
               count(DISTINCT session_id) AS sessions,
               count(*) FILTER (WHERE event_type = 'cancel_page') AS cancel_views,
               count(*) FILTER (WHERE event_type = 'support_page') AS support_views
        FROM clicks GROUP BY ALL""", 30, """
        CAST(coalesce(sum(sessions) OVER w, 0) AS BIGINT) AS sessions_30d,
        CAST(coalesce(sum(cancel_views) OVER w, 0) AS BIGINT) AS cancel_page_views_30d,
        CAST(coalesce(sum(support_views) OVER w, 0) AS BIGINT) AS support_page_views_30d""")),
    timestamp="day",
    features=[Feature("sessions_30d", Int64), Feature("cancel_page_views_30d", Int64),
              Feature("support_page_views_30d", Int64)],
)

tickets = FeatureView(
    name="customer_tickets", entities=[customer], ttl="180d",
    source=sql(windowed("""
        SELECT customer_id, date_trunc('day', opened_at) + INTERVAL 1 DAY AS day,
               count(*) AS n, sum(satisfaction) AS sat, count(satisfaction) AS rated
        FROM tickets GROUP BY ALL""", 180, """
        CAST(coalesce(sum(n) OVER w, 0) AS BIGINT) AS tickets_180d,
        sum(sat) OVER w / nullif(sum(rated) OVER w, 0) AS satisfaction_180d""")),
    timestamp="day",
    features=[Feature("tickets_180d", Int64), Feature("satisfaction_180d", Float64)],
)


@on_demand(inputs=[orders[["orders_90d", "spend_90d"]]],
           features=[Feature("avg_order_value", Float64)])
def order_value(df):
    """Average completed-order value over 90 days (null without orders)."""
    return {"avg_order_value": df["spend_90d"] / df["orders_90d"].where(df["orders_90d"] > 0)}


churn = FeatureService("churn", [profile, orders, clicks, tickets, order_value],
                       description="what the churn model sees")


# -- the churn model: trained from the features above, gated before it may serve ---------------

from tarmac.gates import (  # noqa: E402
    custom,
    latency,
    metric,
    no_nulls_in_predictions,
    no_regression,
    prediction_range,
    slice_gap,
    slice_metric,
)
from tarmac.models import TrainingData, label, model, time_split  # noqa: E402


def region_invariance(ctx):
    """A customer's region alone must not move their churn score much (fairness)."""
    frame = ctx.X().head(500)
    base = ctx.predictor.scores(frame)
    worst = 0.0
    for region in frame["region"].dropna().unique():
        moved = ctx.predictor.scores(frame.assign(region=region))
        worst = max(worst, float(abs(moved - base).mean()))
    return worst <= 0.08, f"mean score shift when only the region changes: {worst:.3f} (<= 0.08)"


@model(name="churn", features="churn",
       label=label("labels", "churned", timestamp="observed_until"),
       split=time_split(test="last 20%", by="label_time"),
       gates=[metric("roc_auc") >= 0.70,
              no_regression("roc_auc", tolerance=0.01),
              slice_metric("roc_auc", by="region") >= 0.55,
              slice_gap("roc_auc", by="region") <= 0.30,
              latency(p99_ms=100, batch_p99_ms=500, batch_size=1000),  # a loaded CI box too
              no_nulls_in_predictions(),
              prediction_range(min=0.0, max=1.0),
              custom(region_invariance)],
       params={"C": 1.0, "only": None},
       slices=["plan"],
       owner="retention-ml@kestrel.example",
       intended_use="Rank Kestrel Mobile customers by their risk of cancelling in the next 30 "
                    "days, for the retention team's weekly outreach list",
       limitations=["Customers with less than a month of history are scored on their plan "
                    "alone: their ranking is weak",
                    "Not for pricing, credit or any decision about a single customer without a "
                    "person reviewing it"])
def churn_model(data: TrainingData):
    """Who cancels in the next 30 days: a logistic regression over the churn features."""
    # scikit-learn is imported here, not at the top: every tarmac command reads this file, and
    # only training needs it (1.5 s saved on each `tarmac features ...`, `tarmac sql`, ...)
    from sklearn.compose import make_column_transformer
    from sklearn.impute import SimpleImputer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import OneHotEncoder, StandardScaler

    keep = data.param("only").split(",") if data.param("only") else data.features
    categorical = [f for f in data.categorical if f in keep]
    numeric = [f for f in data.numeric if f in keep]
    encode = make_column_transformer(
        (OneHotEncoder(handle_unknown="ignore"), categorical),
        (make_pipeline(SimpleImputer(add_indicator=True), StandardScaler()), numeric))
    classifier = LogisticRegression(C=data.param("C"), max_iter=1000)
    return make_pipeline(encode, classifier).fit(data.X, data.y)
