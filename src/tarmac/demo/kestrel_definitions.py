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

orders = FeatureView(
    name="customer_orders", entities=[customer], ttl="90d",
    source=sql("""
        SELECT customer_id, day,
               sum(n) OVER w AS orders_90d, sum(spend) OVER w AS spend_90d
        FROM (SELECT customer_id, date_trunc('day', ordered_at) + INTERVAL 1 DAY AS day,
                     count(*) AS n, sum(amount) AS spend
              FROM orders WHERE status = 'completed' GROUP BY ALL)
        WINDOW w AS (PARTITION BY customer_id ORDER BY day
                     RANGE BETWEEN INTERVAL 89 DAYS PRECEDING AND CURRENT ROW)"""),
    timestamp="day",
    features=[Feature("orders_90d", Int64, "completed orders in the last 90 days"),
              Feature("spend_90d", Float64, "spend on completed orders, last 90 days")],
)

clicks = FeatureView(
    name="customer_clicks", entities=[customer], ttl="30d",
    source=sql("""
        SELECT customer_id, day,
               sum(sessions) OVER w AS sessions_30d,
               sum(cancel_views) OVER w AS cancel_page_views_30d,
               sum(support_views) OVER w AS support_page_views_30d
        FROM (SELECT customer_id, date_trunc('day', event_time) + INTERVAL 1 DAY AS day,
                     count(DISTINCT session_id) AS sessions,
                     count(*) FILTER (WHERE event_type = 'cancel_page') AS cancel_views,
                     count(*) FILTER (WHERE event_type = 'support_page') AS support_views
              FROM clicks GROUP BY ALL)
        WINDOW w AS (PARTITION BY customer_id ORDER BY day
                     RANGE BETWEEN INTERVAL 29 DAYS PRECEDING AND CURRENT ROW)"""),
    timestamp="day",
    features=[Feature("sessions_30d", Int64), Feature("cancel_page_views_30d", Int64),
              Feature("support_page_views_30d", Int64)],
)

tickets = FeatureView(
    name="customer_tickets", entities=[customer], ttl="180d",
    source=sql("""
        SELECT customer_id, day, sum(n) OVER w AS tickets_180d,
               sum(sat) OVER w / nullif(sum(rated) OVER w, 0) AS satisfaction_180d
        FROM (SELECT customer_id, date_trunc('day', opened_at) + INTERVAL 1 DAY AS day,
                     count(*) AS n, sum(satisfaction) AS sat, count(satisfaction) AS rated
              FROM tickets GROUP BY ALL)
        WINDOW w AS (PARTITION BY customer_id ORDER BY day
                     RANGE BETWEEN INTERVAL 179 DAYS PRECEDING AND CURRENT ROW)"""),
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

from sklearn.compose import make_column_transformer  # noqa: E402
from sklearn.impute import SimpleImputer  # noqa: E402
from sklearn.linear_model import LogisticRegression  # noqa: E402
from sklearn.pipeline import make_pipeline  # noqa: E402
from sklearn.preprocessing import OneHotEncoder, StandardScaler  # noqa: E402

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
              latency(p99_ms=50, batch_p99_ms=250, batch_size=1000),
              no_nulls_in_predictions(),
              prediction_range(min=0.0, max=1.0),
              custom(region_invariance)],
       params={"C": 1.0, "only": None},
       slices=["plan"])
def churn_model(data: TrainingData):
    """Who cancels in the next 30 days: a logistic regression over the churn features."""
    keep = data.param("only").split(",") if data.param("only") else data.features
    categorical = [f for f in data.categorical if f in keep]
    numeric = [f for f in data.numeric if f in keep]
    encode = make_column_transformer(
        (OneHotEncoder(handle_unknown="ignore"), categorical),
        (make_pipeline(SimpleImputer(add_indicator=True), StandardScaler()), numeric))
    classifier = LogisticRegression(C=data.param("C"), max_iter=1000)
    return make_pipeline(encode, classifier).fit(data.X, data.y)
