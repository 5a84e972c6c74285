"""The retailer's world: geography, catalogue, customers with latent tastes, and the schedule of
master-data changes. Built deterministically from a seed; arrays, not objects, so 1 M customers
fit in a few hundred MB."""

from __future__ import annotations

import datetime as dt
from dataclasses import asdict, dataclass, field

import numpy as np

from generator import reference as ref

EPOCH = dt.datetime(1970, 1, 1)


@dataclass(frozen=True)
class Scale:
    """How big a world to simulate. `events` is a target; the session rate is calibrated to it."""

    customers: int
    products: int
    days: int
    events: int
    start: dt.date = dt.date(2025, 9, 1)
    seed: int = 42
    anonymous_share: float = 0.30  # share of sessions by visitors who are not logged in
    store_share: float = 0.45  # share of invoices from physical stores (not in the clickstream)

    def __post_init__(self) -> None:
        problems = []
        if self.customers < 10:
            problems.append(f"customers must be at least 10 (got {self.customers})")
        if self.products < 50:
            problems.append(f"products must be at least 50 (got {self.products})")
        if self.days < 1:
            problems.append(f"days must be at least 1 (got {self.days})")
        if self.events < 100:
            problems.append(f"events must be at least 100 (got {self.events})")
        if not 0 <= self.anonymous_share < 1 or not 0 <= self.store_share < 1:
            problems.append("anonymous_share and store_share must be in [0, 1)")
        if problems:
            raise ValueError("; ".join(problems))

    @property
    def end(self) -> dt.date:
        """First day after the simulated window."""
        return self.start + dt.timedelta(days=self.days)

    def to_dict(self) -> dict:
        return {**asdict(self), "start": self.start.isoformat()}

    @classmethod
    def from_dict(cls, values: dict) -> Scale:
        return cls(**{**values, "start": dt.date.fromisoformat(values["start"])})


PRESETS: dict[str, Scale] = {
    "tiny": Scale(customers=300, products=120, days=21, events=30_000),
    "demo": Scale(customers=5_000, products=1_000, days=120, events=1_000_000),
    "medium": Scale(customers=100_000, products=10_000, days=180, events=10_000_000),
    "large": Scale(customers=1_000_000, products=50_000, days=365, events=100_000_000),
}


@dataclass
class World:
    """Master data (current state, mutated as days pass) plus the latent model."""

    scale: Scale
    # geography
    city_names: list[str]
    city_regions: list[str]
    region_names: list[str]
    city_region: np.ndarray  # city -> region index
    area_names: list[str]
    area_city: np.ndarray  # area -> city index
    # catalogue
    category_names: list[str]
    subcategory_names: list[str]
    subcategory_category: np.ndarray
    subcategory_cycle: np.ndarray  # repeat-purchase cycle in days, 0 = not repeatable
    brand_names: list[str]
    product_name: list[str]
    product_description: list[str]
    product_brand: np.ndarray
    product_subcategory: np.ndarray
    product_price: np.ndarray  # current list price
    product_cost: np.ndarray
    product_popularity: np.ndarray  # power-law weight
    product_launch_day: np.ndarray  # day index relative to start (negative = before)
    product_active: np.ndarray  # bool
    # customers
    customer_name: list[str]
    customer_gender: np.ndarray  # 0 male, 1 female
    customer_birth: np.ndarray  # datetime64[D]
    customer_type: np.ndarray  # index into ref.CUSTOMER_TYPES
    customer_tier: np.ndarray  # index into ref.LOYALTY_TIERS
    customer_city: np.ndarray
    customer_area: np.ndarray
    customer_registered_day: np.ndarray  # relative to start (negative = before the window)
    customer_churn_day: np.ndarray  # stops visiting from this day (large = never)
    customer_closed_day: np.ndarray  # account closed in the ERP on this day (large = never)
    customer_activity: np.ndarray  # expected sessions per day at weight 1
    customer_device: np.ndarray  # preferred device index
    customer_category_pref: np.ndarray  # (customers, categories), rows sum to 1
    customer_favourite_brand: np.ndarray  # (customers, categories) brand index or -1
    customer_price_pref: np.ndarray  # preferred log-price offset from the subcategory median
    customer_staple: np.ndarray  # a repeatable product the customer restocks, or -1
    customer_restock_cycle: np.ndarray  # days between restocks
    region_category_tilt: np.ndarray  # (regions, categories) multiplicative preference
    # change schedule: day -> list of (kind, index, payload)
    changes: dict[int, list[tuple[str, int, object]]] = field(default_factory=dict)
    sessions_per_activity: float = 1.0  # calibration: sessions/day per unit of activity

    @property
    def n_customers(self) -> int:
        return len(self.customer_name)

    @property
    def n_products(self) -> int:
        return len(self.product_name)

    def day_date(self, day: int) -> dt.date:
        return self.scale.start + dt.timedelta(days=int(day))

    def category_path(self, product: int) -> str:
        sub = int(self.product_subcategory[product])
        return (
            f"{self.category_names[self.subcategory_category[sub]]} > {self.subcategory_names[sub]}"
        )


def _pick(rng: np.random.Generator, weighted: list[tuple[str, float]], n: int) -> np.ndarray:
    weights = np.array([w for _, w in weighted])
    return rng.choice(len(weighted), size=n, p=weights / weights.sum())


def build_world(scale: Scale) -> World:
    """Everything about the world that does not depend on the day being simulated."""
    rng = np.random.default_rng([scale.seed, 1])

    # -- geography
    city_names = [c[0] for c in ref.CITIES]
    region_names = sorted({c[1] for c in ref.CITIES})
    city_region = np.array([region_names.index(c[1]) for c in ref.CITIES])
    city_share = np.array([c[2] for c in ref.CITIES])
    city_share /= city_share.sum()
    area_names, area_city = [], []
    for ci, (_, _, _, areas) in enumerate(ref.CITIES):
        area_names += areas
        area_city += [ci] * len(areas)
    area_city = np.array(area_city)

    # -- catalogue
    category_names = list(ref.CATEGORIES)
    sub_names, sub_cat, sub_price, sub_cycle = [], [], [], []
    for ci, cat in enumerate(category_names):
        for name, price, cycle in ref.CATEGORIES[cat]:
            sub_names.append(name)
            sub_cat.append(ci)
            sub_price.append(price)
            sub_cycle.append(cycle)
    sub_cat, sub_price, sub_cycle = np.array(sub_cat), np.array(sub_price), np.array(sub_cycle)
    brand_names = [b for cat in category_names for b in ref.BRANDS[cat]]
    brands_by_category: dict[int, list[int]] = {i: [] for i in range(len(category_names))}
    for cat, brands in ref.BRANDS.items():
        brands_by_category[category_names.index(cat)] += [brand_names.index(b) for b in brands]
    for brand, cat in ref.CROSS_CATEGORY_BRANDS.items():
        brands_by_category[category_names.index(cat)].append(brand_names.index(brand))

    n_products = scale.products
    product_sub = rng.choice(len(sub_names), size=n_products)
    product_cat = sub_cat[product_sub]
    product_brand = np.array(
        [rng.choice(brands_by_category[int(c)]) for c in product_cat], dtype=np.int32
    )
    log_price_offset = rng.normal(0.0, 0.45, n_products)
    product_price = np.round(sub_price[product_sub] * np.exp(log_price_offset), -1)
    product_price = np.maximum(product_price, 50.0)
    product_cost = np.round(product_price * rng.uniform(0.55, 0.8, n_products), 2)
    # Power-law popularity: Zipf weights over a random ranking of the catalogue.
    ranks = rng.permutation(n_products) + 1
    product_popularity = 1.0 / ranks**1.05
    launch_day = -rng.integers(30, 1500, n_products)
    new_products = rng.random(n_products) < 0.08
    launch_day[new_products] = rng.integers(0, max(scale.days, 1), new_products.sum())
    features = {c: ref.FEATURE_WORDS[c] for c in category_names}
    product_name, product_description = [], []
    for p in range(n_products):
        cat = category_names[product_cat[p]]
        adjective = ref.PRODUCT_ADJECTIVES[rng.integers(len(ref.PRODUCT_ADJECTIVES))]
        model = f"{chr(65 + rng.integers(26))}{rng.integers(10, 999)}"
        sub = sub_names[product_sub[p]]
        product_name.append(f"{brand_names[product_brand[p]]} {sub} {adjective} {model}")
        words = rng.choice(features[cat], size=3, replace=False)
        product_description.append(
            f"{adjective} {sub.lower()} by {brand_names[product_brand[p]]}: "
            + ", ".join(words)
            + "."
        )

    # -- customers and their latent tastes
    n = scale.customers
    gender = (rng.random(n) < 0.45).astype(np.int8)
    first = np.where(
        gender == 1,
        rng.choice(ref.FIRST_NAMES_FEMALE, n),
        rng.choice(ref.FIRST_NAMES_MALE, n),
    )
    last = rng.choice(ref.LAST_NAMES, n)
    customer_name = [f"{a} {b}" for a, b in zip(first, last, strict=True)]
    age_days = (rng.gamma(4.0, 2.6, n) + 18) * 365.25
    birth = (np.datetime64(scale.start) - age_days.astype("timedelta64[D]")).astype("datetime64[D]")
    customer_city = rng.choice(len(city_names), size=n, p=city_share)
    customer_area = np.zeros(n, dtype=np.int64)
    for c in range(len(city_names)):
        in_city = np.flatnonzero(customer_city == c)
        customer_area[in_city] = rng.choice(np.flatnonzero(area_city == c), size=len(in_city))
    registered = -rng.integers(1, 3 * 365, n)
    newcomers = rng.random(n) < 0.15
    registered[newcomers] = rng.integers(0, scale.days, newcomers.sum())
    never = np.iinfo(np.int32).max
    churn_day = np.full(n, never, dtype=np.int64)
    churners = (~newcomers) & (rng.random(n) < 0.12)
    churn_day[churners] = rng.integers(0, scale.days, churners.sum())
    closed_day = np.full(n, never, dtype=np.int64)
    closers = churners & (rng.random(n) < 0.25)
    closed_day[closers] = np.minimum(
        churn_day[closers] + rng.integers(5, 40, closers.sum()), scale.days - 1
    )
    activity = rng.lognormal(0.0, 0.9, n)
    tier = np.digitize(activity, np.quantile(activity, [0.6, 0.85, 0.96]))

    n_regions, n_categories = len(region_names), len(category_names)
    region_tilt = np.exp(rng.normal(0.0, 0.45, (n_regions, n_categories)))
    base_share = np.array(ref.CATEGORY_BASE_SHARE)
    alpha = 1.2 * base_share[None, :] * region_tilt[city_region[customer_city]]
    category_pref = rng.gamma(alpha)  # Dirichlet rows via normalised gammas
    category_pref /= category_pref.sum(axis=1, keepdims=True)

    favourite_brand = np.full((n, n_categories), -1, dtype=np.int32)
    for c in range(n_categories):
        options = np.array(brands_by_category[c])
        has = rng.random(n) < 0.7
        favourite_brand[has, c] = rng.choice(options, size=has.sum())

    price_pref = rng.normal(0.0, 0.35, n)
    repeatable = np.flatnonzero(sub_cycle[product_sub] > 0)
    staple = np.full(n, -1, dtype=np.int64)
    restock_cycle = np.zeros(n, dtype=np.int64)
    if len(repeatable):
        takers = rng.random(n) < 0.35
        # Restockers pick a staple in the repeatable category they like most, weighted by
        # popularity; that preference is part of the ground truth.
        rep_cat = product_cat[repeatable]
        for c in np.unique(rep_cat):
            pool = repeatable[rep_cat == c]
            weights = product_popularity[pool] / product_popularity[pool].sum()
            likes = takers & (
                np.argmax(category_pref * (np.isin(np.arange(n_categories), rep_cat)), axis=1) == c
            )
            staple[likes] = rng.choice(pool, size=likes.sum(), p=weights)
        has_staple = staple >= 0
        base_cycle = sub_cycle[product_sub[staple[has_staple]]]
        restock_cycle[has_staple] = np.maximum(
            2, np.round(base_cycle * rng.uniform(0.7, 1.3, has_staple.sum()))
        ).astype(np.int64)

    world = World(
        scale=scale,
        city_names=city_names,
        city_regions=[c[1] for c in ref.CITIES],
        region_names=region_names,
        city_region=city_region,
        area_names=area_names,
        area_city=area_city,
        category_names=category_names,
        subcategory_names=sub_names,
        subcategory_category=sub_cat,
        subcategory_cycle=sub_cycle,
        brand_names=brand_names,
        product_name=product_name,
        product_description=product_description,
        product_brand=product_brand,
        product_subcategory=product_sub.astype(np.int32),
        product_price=product_price,
        product_cost=product_cost,
        product_popularity=product_popularity,
        product_launch_day=launch_day,
        product_active=np.ones(n_products, dtype=bool),
        customer_name=customer_name,
        customer_gender=gender,
        customer_birth=birth,
        customer_type=_pick(rng, ref.CUSTOMER_TYPES, n),
        customer_tier=tier,
        customer_city=customer_city,
        customer_area=customer_area,
        customer_registered_day=registered,
        customer_churn_day=churn_day,
        customer_closed_day=closed_day,
        customer_activity=activity,
        customer_device=_pick(rng, ref.DEVICES, n),
        customer_category_pref=category_pref,
        customer_favourite_brand=favourite_brand,
        customer_price_pref=price_pref,
        customer_staple=staple,
        customer_restock_cycle=restock_cycle,
        region_category_tilt=region_tilt,
    )
    world.changes = _schedule_changes(world, rng)
    return world


def _schedule_changes(world: World, rng: np.random.Generator) -> dict[int, list]:
    """Master-data changes during the window, so silver has history to keep (SCD2)."""
    scale, changes = world.scale, {}

    def add(day: int, kind: str, index: int, payload: object) -> None:
        changes.setdefault(int(day), []).append((kind, int(index), payload))

    n = world.n_customers
    existing = np.flatnonzero(world.customer_registered_day < 0)
    movers = existing[rng.random(len(existing)) < 0.05]
    for c in movers:
        city = int(rng.choice(len(world.city_names)))
        area = int(rng.choice(np.flatnonzero(world.area_city == city)))
        add(rng.integers(0, scale.days), "customer_move", c, (city, area))
    for c in np.flatnonzero(world.customer_closed_day < scale.days):
        add(world.customer_closed_day[c], "customer_close", c, None)
    upgrades = rng.choice(n, size=max(1, n // 50), replace=False)
    for c in upgrades:
        new_tier = min(int(world.customer_tier[c]) + 1, len(ref.LOYALTY_TIERS) - 1)
        add(rng.integers(0, scale.days), "customer_tier", c, new_tier)

    n_products = world.n_products
    repriced = rng.choice(n_products, size=max(1, n_products // 8), replace=False)
    for p in repriced:
        factor = float(rng.choice([0.8, 0.85, 0.9, 1.05, 1.1, 1.2]))
        add(rng.integers(1, scale.days), "product_price", p, factor)
    moved = rng.choice(n_products, size=max(1, n_products // 100), replace=False)
    for p in moved:
        category = world.subcategory_category[world.product_subcategory[p]]
        siblings = np.flatnonzero(world.subcategory_category == category)
        add(rng.integers(1, scale.days), "product_subcategory", p, int(rng.choice(siblings)))
    retired = rng.choice(n_products, size=max(1, n_products // 33), replace=False)
    for p in retired:
        add(rng.integers(1, scale.days), "product_retire", p, None)
    return changes


def day_weight(day: dt.date) -> float:
    """Relative traffic of a day: weekly and yearly seasonality plus Black-Friday week."""
    weight = ref.WEEKDAY_WEIGHTS[day.weekday()]
    weight *= 1.0 + 0.12 * np.cos(2 * np.pi * (day.timetuple().tm_yday - 350) / 365.25)
    black_friday = _black_friday(day.year)
    offset = (day - black_friday).days
    peak = {-3: 1.3, -2: 1.4, -1: 1.6, 0: 3.0, 1: 2.2, 2: 1.8, 3: 2.0}
    return float(weight * peak.get(offset, 1.0))


def _black_friday(year: int) -> dt.date:
    """The day after the fourth Thursday of November."""
    first = dt.date(year, 11, 1)
    thursday = first + dt.timedelta(days=(3 - first.weekday()) % 7)
    return thursday + dt.timedelta(days=22)
