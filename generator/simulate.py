"""Day-by-day simulation of sessions, events, invoices and master-data changes.

Everything is vectorised per day with numpy, so memory is bounded by one day's traffic. The
simulation is sequential (restock cycles and pending returns carry over), deterministic for a
seed, and identical however its output is consumed: the ERP writer, the event files and the Kafka
producer all replay the same days.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from dataclasses import dataclass, field

import numpy as np

from generator import reference as ref
from generator.world import World, day_weight

EVENT_TYPES = ["page_view", "product_view", "search", "add_to_cart", "remove_from_cart", "purchase"]
PAGE_VIEW, PRODUCT_VIEW, SEARCH, ADD_TO_CART, REMOVE_FROM_CART, PURCHASE = range(6)
CHANNELS = ["Web", "App", "Store"]
INVOICE_SALE, INVOICE_RETURN = "Sale", "Return"
MS_PER_DAY = 86_400_000
UTC_OFFSET_HOURS = 5  # the retailer's customers live at UTC+5: shift the hour-of-day curve


@dataclass
class DayBatch:
    """What happened on one simulated day (times are epoch milliseconds, UTC)."""

    day: int
    date: dt.date
    events: dict[str, np.ndarray]  # sorted by event_time
    invoices: dict[str, np.ndarray]
    lines: dict[str, np.ndarray]
    new_customers: np.ndarray  # customer indices registered today
    new_products: np.ndarray  # product indices launched today
    changes: list[tuple[str, int, object]] = field(default_factory=list)
    search_queries: dict[int, str] = field(default_factory=dict)  # event row -> query

    @property
    def midnight_ms(self) -> int:
        return _epoch_ms(self.date)

    @property
    def n_events(self) -> int:
        return len(self.events["event_time"])


def _epoch_ms(day: dt.date) -> int:
    return int(
        (dt.datetime(day.year, day.month, day.day) - dt.datetime(1970, 1, 1)).total_seconds() * 1000
    )


def _choose_rows(rng: np.random.Generator, weights: np.ndarray) -> np.ndarray:
    """One index per row of a (n, k) weight matrix, proportional to the row's weights."""
    cum = np.cumsum(weights, axis=1)
    u = rng.random(len(weights)) * cum[:, -1]
    return np.minimum((cum < u[:, None]).sum(axis=1), weights.shape[1] - 1)


def _segment_positions(counts: np.ndarray) -> np.ndarray:
    """For counts [2, 3] -> [0, 1, 0, 1, 2]: position of each item within its group."""
    starts = np.repeat(np.cumsum(counts) - counts, counts)
    return np.arange(counts.sum()) - starts


@dataclass
class _Sessions:
    ids: np.ndarray
    customer: np.ndarray  # -1 for anonymous visitors
    city: np.ndarray
    device: np.ndarray
    start: np.ndarray  # epoch ms
    has_search: np.ndarray
    n_views: np.ndarray  # product views per session


@dataclass
class _Views:
    session: np.ndarray  # row in the day's sessions
    position: np.ndarray  # 0.. within the session
    product: np.ndarray
    carted: np.ndarray
    removed: np.ndarray


class Simulation:
    """Carries the state that links days: restock schedules, pending returns, id counters."""

    CANDIDATES = 6  # products sampled by popularity, then re-weighted by the customer's taste

    def __init__(self, world: World):
        self.world = world
        seed = world.scale.seed
        rng = np.random.default_rng([seed, 2])
        self.next_restock = np.full(world.n_customers, -1, dtype=np.int64)
        has = world.customer_staple >= 0
        start = np.maximum(world.customer_registered_day[has], 0)
        self.next_restock[has] = start + rng.integers(0, world.customer_restock_cycle[has])
        self.pending_returns: dict[int, list[tuple]] = {}
        self.next_invoice_id = 1
        self.session_counter = 0
        sub_median = np.array([p for c in ref.CATEGORIES.values() for _, p, _ in c])
        self.subcategory_median = sub_median
        n_regions = len(world.region_names)
        region_pref = np.array(ref.CATEGORY_BASE_SHARE)[None, :] * world.region_category_tilt
        self.region_pref = region_pref / region_pref.sum(axis=1, keepdims=True)
        self.city_share = np.array([c[2] for c in ref.CITIES]) / sum(c[2] for c in ref.CITIES)
        assert region_pref.shape[0] == n_regions
        self.branches = {
            c: [f"{name[:3].upper()}-{i + 1:02d}" for i in range(1 + (c < 3) * 2)]
            for c, name in enumerate(world.city_names)
        }
        world.sessions_per_activity = self._calibrate()

    # -- calibration ----------------------------------------------------------------------

    EVENTS_PER_SESSION = 4.7  # measured average of the session model below

    def _calibrate(self) -> float:
        """Sessions per unit of activity so that the window produces about `scale.events`."""
        w, scale = self.world, self.world.scale
        customer_sessions = scale.events / self.EVENTS_PER_SESSION * (1 - scale.anonymous_share)
        # Restock sessions come on top of the activity-driven ones: take them out of the budget
        # (they are shorter: ~3.5 events instead of ~4.7).
        staple = w.customer_staple >= 0
        first = np.maximum(w.customer_registered_day[staple], 0)
        last = np.minimum(
            np.minimum(w.customer_churn_day[staple], w.customer_closed_day[staple]), scale.days
        )
        restocks = (np.maximum(last - first, 0) / w.customer_restock_cycle[staple]).sum()
        customer_sessions = max(
            customer_sessions - 0.75 * restocks / (1 - scale.anonymous_share),
            0.2 * customer_sessions,
        )
        exposure = 0.0
        for day in range(scale.days):
            active = self._active(day)
            exposure += day_weight(w.day_date(day)) * w.customer_activity[active].sum()
        return customer_sessions / max(exposure, 1e-9)

    def _active(self, day: int) -> np.ndarray:
        w = self.world
        return (
            (w.customer_registered_day <= day)
            & (w.customer_churn_day > day)
            & (w.customer_closed_day > day)
        )

    # -- the day loop ---------------------------------------------------------------------

    def days(self, through_day: int) -> Iterator[DayBatch]:
        """Simulate day 0 .. through_day-1 in order (days past the window are allowed)."""
        for day in range(through_day):
            yield self.run_day(day)

    def run_day(self, day: int) -> DayBatch:
        w = self.world
        rng = np.random.default_rng([w.scale.seed, 3, day])
        date = w.day_date(day)
        midnight = _epoch_ms(date)
        changes = self._apply_changes(day)
        weight = day_weight(date)
        peak = weight > 1.5
        available = (w.product_launch_day <= day) & w.product_active

        # Sessions: logged-in customers (Poisson by activity), restocks, anonymous visitors.
        active = np.flatnonzero(self._active(day))
        lam = w.customer_activity[active] * w.sessions_per_activity * weight
        s_customer = np.repeat(active, rng.poisson(lam))
        due = active[(self.next_restock[active] == day)]
        due = due[available[w.customer_staple[due]]]
        jitter = rng.integers(-2, 3, len(due))
        self.next_restock[due] = day + np.maximum(2, w.customer_restock_cycle[due] + jitter)
        late = active[(self.next_restock[active] >= 0) & (self.next_restock[active] < day)]
        self.next_restock[late] = day + 1 + rng.integers(0, 3, len(late))
        n_known = len(s_customer) + len(due)
        share = w.scale.anonymous_share
        n_anon = rng.poisson(n_known * share / (1 - share)) if n_known else 0
        s_customer = np.concatenate([s_customer, due, np.full(n_anon, -1)]).astype(np.int64)
        s_restock = np.zeros(len(s_customer), dtype=bool)
        s_restock[len(s_customer) - n_anon - len(due) : len(s_customer) - n_anon] = True
        n_sessions = len(s_customer)
        known = s_customer >= 0
        cust = np.where(known, s_customer, 0)

        s_city = np.where(
            known,
            w.customer_city[cust],
            rng.choice(len(self.city_share), size=n_sessions, p=self.city_share),
        )
        device_choice = rng.choice(
            len(ref.DEVICES), size=n_sessions, p=np.array([d[1] for d in ref.DEVICES])
        )
        s_device = np.where(
            known & (rng.random(n_sessions) < 0.85), w.customer_device[cust], device_choice
        )
        prefs = np.where(
            known[:, None], w.customer_category_pref[cust], self.region_pref[w.city_region[s_city]]
        )
        s_category = _choose_rows(rng, prefs)
        staple = np.where(s_restock, w.customer_staple[cust], -1)
        s_category = np.where(
            s_restock,
            w.subcategory_category[w.product_subcategory[np.maximum(staple, 0)]],
            s_category,
        )
        hour_p = np.roll(np.array(ref.HOUR_WEIGHTS), -UTC_OFFSET_HOURS)
        s_start = (
            midnight
            + rng.choice(24, size=n_sessions, p=hour_p / hour_p.sum()) * 3_600_000
            + rng.integers(0, 3_600_000, n_sessions)
        )
        s_ids = self.session_counter + np.arange(n_sessions)
        self.session_counter += n_sessions

        # Product views, chosen by popularity re-weighted by taste.
        n_views = np.minimum(rng.geometric(np.where(s_restock, 0.6, 0.36)), 15)
        v_session = np.repeat(np.arange(n_sessions), n_views)
        v_pos = _segment_positions(n_views)
        v_product, v_fit, v_fav = self._choose_products(
            rng, s_customer[v_session], s_category[v_session], available
        )
        first_restock = s_restock[v_session] & (v_pos == 0)
        v_product = np.where(first_restock, staple[v_session], v_product)
        promo = 1.25 if peak else 1.0
        p_cart = np.clip((0.05 + 0.11 * v_fit) * np.where(v_fav, 1.6, 1.0) * promo, 0, 0.9)
        p_cart = np.where(first_restock, 0.92, p_cart)
        v_cart = rng.random(len(v_product)) < p_cart
        v_removed = v_cart & (rng.random(len(v_product)) < 0.12)

        # Purchases: logged-in sessions with something left in the cart.
        kept = v_cart & ~v_removed
        kept_per_session = np.bincount(v_session[kept], minlength=n_sessions)
        p_buy = np.where(s_restock, 0.9, 0.42) * promo
        s_buys = known & (kept_per_session > 0) & (rng.random(n_sessions) < p_buy)
        line_views = np.flatnonzero(kept & s_buys[v_session])
        # One line per distinct product in a session's cart.
        pairs = v_session[line_views] * (w.n_products + 1) + v_product[line_views]
        _, first_idx = np.unique(pairs, return_index=True)
        line_views = line_views[np.sort(first_idx)]
        has_search = rng.random(n_sessions) < np.where(s_restock, 0.5, 0.35)

        sessions = _Sessions(s_ids, s_customer, s_city, s_device, s_start, has_search, n_views)
        views = _Views(v_session, v_pos, v_product, v_cart, v_removed)
        events = self._assemble_events(rng, sessions, views, line_views)
        search_rows = np.flatnonzero(events["event_type"] == SEARCH)
        queries = self._search_queries(rng, search_rows, events, s_category, s_customer)

        invoices, lines = self._invoices(rng, day, midnight, peak, events, available)
        return DayBatch(
            day=day,
            date=date,
            events=events,
            invoices=invoices,
            lines=lines,
            new_customers=np.flatnonzero(w.customer_registered_day == day),
            new_products=np.flatnonzero(w.product_launch_day == day),
            changes=changes,
            search_queries=queries,
        )

    # -- pieces ---------------------------------------------------------------------------

    def _apply_changes(self, day: int) -> list[tuple[str, int, object]]:
        """Master-data changes take effect at midnight UTC, before the day's traffic."""
        w = self.world
        applied = []
        for kind, index, payload in w.changes.get(day, []):
            if kind == "customer_move":
                w.customer_city[index], w.customer_area[index] = payload
            elif kind == "customer_tier":
                w.customer_tier[index] = payload
            elif kind == "product_price":
                w.product_price[index] = max(50.0, round(w.product_price[index] * payload, -1))
            elif kind == "product_subcategory":
                w.product_subcategory[index] = payload
            elif kind == "product_retire":
                w.product_active[index] = False
            applied.append((kind, index, payload))
        return applied

    def _choose_products(
        self,
        rng: np.random.Generator,
        customer: np.ndarray,
        category: np.ndarray,
        available: np.ndarray,
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Sample-and-rerank: K candidates by popularity within the category, one kept with
        probability proportional to the customer's fit (favourite brand, price level)."""
        w, k = self.world, self.CANDIDATES
        n = len(customer)
        candidates = np.zeros((n, k), dtype=np.int64)
        product_category = w.subcategory_category[w.product_subcategory]
        for c in np.unique(category):
            rows = np.flatnonzero(category == c)
            pool = np.flatnonzero((product_category == c) & available)
            if len(pool) == 0:
                pool = np.flatnonzero(available)
            cum = np.cumsum(w.product_popularity[pool])
            picks = np.searchsorted(cum, rng.random((len(rows), k)) * cum[-1])
            candidates[rows] = pool[np.minimum(picks, len(pool) - 1)]
        known = customer >= 0
        cust = np.where(known, customer, 0)
        favourite = w.customer_favourite_brand[cust, category]
        is_fav = known[:, None] & (w.product_brand[candidates] == favourite[:, None])
        log_rel_price = np.log(
            w.product_price[candidates] / self.subcategory_median[w.product_subcategory[candidates]]
        )
        price_pref = np.where(known, w.customer_price_pref[cust], 0.0)
        fit = np.exp(-((log_rel_price - price_pref[:, None]) ** 2) / (2 * 0.4**2))
        score = fit * np.where(is_fav, 4.0, 1.0)
        choice = _choose_rows(rng, score)
        rows = np.arange(n)
        return candidates[rows, choice], fit[rows, choice], is_fav[rows, choice]

    def _assemble_events(
        self, rng: np.random.Generator, sessions: _Sessions, views: _Views, line_views: np.ndarray
    ) -> dict[str, np.ndarray]:
        """Build every event with an in-session order key, then lay them out in time."""
        s_ids, s_customer, s_city = sessions.ids, sessions.customer, sessions.city
        s_device, s_start, has_search = sessions.device, sessions.start, sessions.has_search
        n_views = sessions.n_views
        v_session, v_pos, v_product = views.session, views.position, views.product
        v_cart, v_removed = views.carted, views.removed
        w = self.world
        n_sessions = len(s_ids)
        parts = []  # (session, order key, type, product, quantity, line order)

        def add(session, order, etype, product, quantity):
            parts.append(
                (session, order, np.full(len(session), etype, dtype=np.int8), product, quantity)
            )

        none = np.full(n_sessions, -1, dtype=np.int64)
        add(np.arange(n_sessions), np.zeros(n_sessions), PAGE_VIEW, none, none)
        searched = np.flatnonzero(has_search)
        add(searched, np.ones(len(searched)), SEARCH, none[searched], none[searched])
        add(v_session, 10 + 10 * v_pos, PRODUCT_VIEW, v_product, np.full(len(v_session), -1))
        carts = np.flatnonzero(v_cart)
        add(
            v_session[carts],
            11 + 10 * v_pos[carts],
            ADD_TO_CART,
            v_product[carts],
            np.ones(len(carts), dtype=np.int64),
        )
        removes = np.flatnonzero(v_removed)
        tail = 10 + 10 * n_views
        add(
            v_session[removes],
            tail[v_session[removes]] + 1 + v_pos[removes] / 100,
            REMOVE_FROM_CART,
            v_product[removes],
            np.ones(len(removes), dtype=np.int64),
        )
        cycle = w.subcategory_cycle[w.product_subcategory[v_product[line_views]]]
        quantity = np.where(
            cycle > 0, rng.geometric(0.6, len(line_views)), 1 + (rng.random(len(line_views)) < 0.05)
        )
        l_session = v_session[line_views]
        add(
            l_session,
            tail[l_session] + 50 + _rank_within(l_session) / 100,
            PURCHASE,
            v_product[line_views],
            quantity.astype(np.int64),
        )

        session = np.concatenate([p[0] for p in parts]).astype(np.int64)
        order = np.concatenate([p[1] for p in parts]).astype(np.float64)
        etype = np.concatenate([p[2] for p in parts])
        product = np.concatenate([p[3] for p in parts]).astype(np.int64)
        qty = np.concatenate([p[4] for p in parts]).astype(np.int64)
        sort = np.lexsort((order, session))
        session, etype, product, qty = session[sort], etype[sort], product[sort], qty[sort]

        # Gaps within a session: reading a product page takes longer than clicking "add".
        mean_gap = np.select(
            [etype == ADD_TO_CART, etype == PURCHASE, etype == SEARCH],
            [12_000, 90_000, 20_000],
            38_000,
        )
        gaps = rng.exponential(1.0, len(session)) * mean_gap
        first = np.r_[True, session[1:] != session[:-1]]
        gaps[first] = 0
        # All lines of one order share the order's timestamp.
        same_order = ~first & (etype == PURCHASE) & np.r_[False, etype[:-1] == PURCHASE]
        gaps[same_order] = 0
        cum = np.cumsum(gaps)
        group_start = np.maximum.accumulate(np.where(first, np.arange(len(session)), 0))
        offset = cum - cum[group_start]
        times = s_start[session] + offset.astype(np.int64)

        customer = s_customer[session]
        price = np.where(product >= 0, w.product_price[np.maximum(product, 0)], np.nan)
        by_time = np.argsort(times, kind="stable")
        events = {
            "event_time": times,
            "event_type": etype,
            "session": s_ids[session],
            "session_row": session,
            "customer": customer,
            "product": product,
            "price": price,
            "quantity": qty,
            "device": s_device[session],
            "city": s_city[session],
        }
        events = {k: v[by_time] for k, v in events.items()}
        events["order"] = np.full(len(times), -1, dtype=np.int64)
        uuids = rng.integers(0, 256, size=(len(times), 16), dtype=np.uint8)
        uuids[:, 6] = (uuids[:, 6] & 0x0F) | 0x40  # version 4
        uuids[:, 8] = (uuids[:, 8] & 0x3F) | 0x80  # RFC 4122 variant
        events["uuid"] = uuids
        session_uuids = rng.integers(0, 256, size=(n_sessions, 16), dtype=np.uint8)
        session_uuids[:, 6] = (session_uuids[:, 6] & 0x0F) | 0x40
        session_uuids[:, 8] = (session_uuids[:, 8] & 0x3F) | 0x80
        events["session_uuid"] = session_uuids[events["session_row"]]
        return events

    def _search_queries(self, rng, rows, events, s_category, s_customer) -> dict[int, str]:
        w = self.world
        queries = {}
        for row in rows.tolist():
            session_row = events["session_row"][row]
            cat = int(s_category[session_row])
            subs = np.flatnonzero(w.subcategory_category == cat)
            sub = w.subcategory_names[int(rng.choice(subs))].lower()
            style = rng.integers(3)
            if style == 0:
                text = sub
            elif style == 1:
                brand = w.customer_favourite_brand[max(s_customer[session_row], 0), cat]
                brand = (
                    w.brand_names[brand]
                    if brand >= 0
                    else w.brand_names[int(rng.integers(len(w.brand_names)))]
                )
                text = f"{brand.lower()} {sub}"
            else:
                extra = ref.SEARCH_TERMS_EXTRA[int(rng.integers(len(ref.SEARCH_TERMS_EXTRA)))]
                text = f"{sub} {extra}"
            queries[row] = text
        return queries

    def _invoices(self, rng, day, midnight, peak, events, available):
        """ERP invoices: one per online order (matching the purchase events), store sales, and
        the returns that fall due today."""
        w = self.world
        headers: list[dict] = []
        lines: list[tuple] = []
        purchase_rows = np.flatnonzero(events["event_type"] == PURCHASE)
        # Online orders: group purchase events of a session into one invoice.
        order_of_session: dict[int, int] = {}
        for row in purchase_rows.tolist():
            session = int(events["session"][row])
            if session not in order_of_session:
                invoice = self._new_invoice_id()
                order_of_session[session] = invoice
                customer = int(events["customer"][row])
                device = ref.DEVICES[int(events["device"][row])][0]
                headers.append(
                    {
                        "invoice_id": invoice,
                        "time": int(events["event_time"][row]),
                        "customer": customer,
                        "city": int(w.customer_city[customer]),
                        "area": int(w.customer_area[customer]),
                        "branch": "ONLINE",
                        "channel": "App" if device.startswith("mobile_app") else "Web",
                        "payment": _weighted(rng, ref.ONLINE_PAYMENTS),
                        "type": INVOICE_SALE,
                        "original": -1,
                    }
                )
            events["order"][row] = order_of_session[session]
            lines.append(
                (
                    order_of_session[session],
                    int(events["product"][row]),
                    int(events["quantity"][row]),
                    float(events["price"][row]),
                )
            )

        # Store sales: no clickstream, same customers and tastes.
        n_online = len(order_of_session)
        share = w.scale.store_share
        n_store = rng.poisson(max(n_online, 1) * share / (1 - share))
        active = np.flatnonzero(self._active(day))
        if n_store and len(active):
            cum = np.cumsum(w.customer_activity[active])
            buyers = active[
                np.minimum(np.searchsorted(cum, rng.random(n_store) * cum[-1]), len(active) - 1)
            ]
            n_lines = np.minimum(rng.geometric(0.55, n_store), 6)
            l_buyer = np.repeat(buyers, n_lines)
            l_category = _choose_rows(rng, w.customer_category_pref[l_buyer])
            products, _, _ = self._choose_products(rng, l_buyer, l_category, available)
            hours = rng.integers(10 - UTC_OFFSET_HOURS, 22 - UTC_OFFSET_HOURS, n_store)
            times = midnight + hours * 3_600_000 + rng.integers(0, 3_600_000, n_store)
            starts = np.cumsum(n_lines) - n_lines
            for i, customer in enumerate(buyers.tolist()):
                invoice = self._new_invoice_id()
                city = int(w.customer_city[customer])
                branches = self.branches[city]
                headers.append(
                    {
                        "invoice_id": invoice,
                        "time": int(times[i]),
                        "customer": customer,
                        "city": city,
                        "area": int(w.customer_area[customer]),
                        "branch": branches[int(rng.integers(len(branches)))],
                        "channel": "Store",
                        "payment": _weighted(rng, ref.STORE_PAYMENTS),
                        "type": INVOICE_SALE,
                        "original": -1,
                    }
                )
                seen = set()
                for j in range(starts[i], starts[i] + n_lines[i]):
                    product = int(products[j])
                    if product in seen:
                        continue
                    seen.add(product)
                    cycle = w.subcategory_cycle[w.product_subcategory[product]]
                    qty = int(rng.geometric(0.6)) if cycle else 1
                    lines.append((invoice, product, qty, float(w.product_price[product])))

        # Discounts, totals, cancellations; schedule some returns.
        line_arr = _lines_array(lines)
        n_lines = len(line_arr["invoice"])
        rate = rng.uniform(0.15, 0.4, n_lines) if peak else rng.uniform(0.05, 0.25, n_lines)
        discount_rate = np.where(rng.random(n_lines) < (0.5 if peak else 0.15), rate, 0.0)
        gross = line_arr["quantity"] * line_arr["unit_price"]
        line_discount = np.round(gross * discount_rate, 2)
        line_amount = np.round(gross - line_discount, 2)
        for h in headers:
            h["status"] = "Completed"
            h["modified"] = h["time"]
        line_invoice = line_arr["invoice"].tolist()
        by_invoice = {h["invoice_id"]: h for h in headers}
        lines_of: dict[int, list[int]] = {}
        for h in headers:
            h["gross"], h["line_discount"], h["net_lines"] = 0.0, 0.0, 0.0
        for i, inv in enumerate(line_invoice):
            h = by_invoice[inv]
            h["gross"] += float(gross[i])
            h["line_discount"] += float(line_discount[i])
            h["net_lines"] += float(line_amount[i])
            lines_of.setdefault(inv, []).append(i)
        for h in headers:
            coupon = 0.0
            if rng.random() < 0.05:
                coupon = round(h["net_lines"] * float(rng.uniform(0.03, 0.10)), 2)
            h["discount"] = round(h["line_discount"] + coupon, 2)
            h["net"] = round(h["net_lines"] - coupon, 2)
            h["gross"] = round(h["gross"], 2)
            if h["channel"] != "Store" and rng.random() < 0.025:
                h["status"] = "Cancelled"
                h["modified"] = h["time"] + int(rng.integers(600_000, 6 * 3_600_000))
            elif rng.random() < (0.03 if h["channel"] == "Store" else 0.045):
                # A return of one line, some days later; remember what it needs.
                i = lines_of[h["invoice_id"]][int(rng.integers(len(lines_of[h["invoice_id"]])))]
                due = day + int(rng.integers(3, 22))
                self.pending_returns.setdefault(due, []).append(
                    (
                        h["invoice_id"],
                        h["customer"],
                        h["branch"],
                        h["channel"],
                        h["payment"],
                        int(line_arr["product"][i]),
                        int(line_arr["quantity"][i]),
                        float(line_arr["unit_price"][i]),
                        float(line_discount[i]),
                        float(line_amount[i]),
                    )
                )

        # Returns falling due today become invoices of their own, with negative lines.
        line_cols = [
            (inv, int(p), int(q), float(u), float(d), float(a))
            for inv, p, q, u, d, a in zip(
                line_invoice,
                line_arr["product"],
                line_arr["quantity"],
                line_arr["unit_price"],
                line_discount,
                line_amount,
                strict=True,
            )
        ]
        for (
            original,
            customer,
            branch,
            channel,
            payment,
            product,
            qty,
            unit,
            disc,
            amount,
        ) in self.pending_returns.pop(day, []):
            invoice = self._new_invoice_id()
            time = midnight + int(rng.integers(9 * 3_600_000, 17 * 3_600_000))
            headers.append(
                {
                    "invoice_id": invoice,
                    "time": time,
                    "customer": customer,
                    "city": int(w.customer_city[customer]),
                    "area": int(w.customer_area[customer]),
                    "branch": branch,
                    "channel": channel,
                    "payment": payment,
                    "type": INVOICE_RETURN,
                    "original": original,
                    "gross": round(-qty * unit, 2),
                    "discount": round(-disc, 2),
                    "net": round(-amount, 2),
                    "status": "Completed",
                    "modified": time,
                }
            )
            line_cols.append((invoice, product, -qty, unit, round(-disc, 2), round(-amount, 2)))

        invoices = _headers_array(headers)
        inv, prod, qty, unit, disc, amount = (
            (np.array(c) for c in zip(*line_cols, strict=True))
            if line_cols
            else (np.zeros(0, np.int64) for _ in range(6))
        )
        lines = {
            "invoice": inv.astype(np.int64),
            "line_no": _rank_within(inv.astype(np.int64)) + 1,
            "product": prod.astype(np.int64),
            "quantity": qty.astype(np.int64),
            "unit_price": unit.astype(np.float64),
            "discount": disc.astype(np.float64),
            "amount": amount.astype(np.float64),
        }
        return invoices, lines

    def _new_invoice_id(self) -> int:
        invoice = self.next_invoice_id
        self.next_invoice_id += 1
        return invoice


def _rank_within(keys: np.ndarray) -> np.ndarray:
    """Position of each element among the earlier elements with the same key."""
    if len(keys) == 0:
        return np.zeros(0, dtype=np.int64)
    order = np.argsort(keys, kind="stable")
    sorted_keys = keys[order]
    first = np.r_[True, sorted_keys[1:] != sorted_keys[:-1]]
    starts = np.maximum.accumulate(np.where(first, np.arange(len(keys)), 0))
    ranks = np.empty(len(keys), dtype=np.int64)
    ranks[order] = np.arange(len(keys)) - starts
    return ranks


def _weighted(rng: np.random.Generator, options: list[tuple[str, float]]) -> str:
    weights = np.array([w for _, w in options])
    return options[int(rng.choice(len(options), p=weights / weights.sum()))][0]


def _lines_array(lines: list[tuple]) -> dict[str, np.ndarray]:
    if not lines:
        return {
            "invoice": np.zeros(0, np.int64),
            "product": np.zeros(0, np.int64),
            "quantity": np.zeros(0, np.int64),
            "unit_price": np.zeros(0),
        }
    inv, prod, qty, price = zip(*lines, strict=True)
    return {
        "invoice": np.array(inv, dtype=np.int64),
        "product": np.array(prod, dtype=np.int64),
        "quantity": np.array(qty, dtype=np.int64),
        "unit_price": np.array(price),
    }


HEADER_FIELDS = [
    "invoice_id",
    "time",
    "customer",
    "city",
    "area",
    "branch",
    "channel",
    "payment",
    "type",
    "original",
    "gross",
    "discount",
    "net",
    "status",
    "modified",
]


def _headers_array(headers: list[dict]) -> dict[str, np.ndarray]:
    return {f: np.array([h[f] for h in headers]) if headers else np.zeros(0) for f in HEADER_FIELDS}
