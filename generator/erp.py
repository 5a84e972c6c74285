"""The ERP source database: Allied-style `MV_*` tables (schema in docs/erp_schema.md), written
to any SQLAlchemy URL (SQLite by default, PostgreSQL in production-like set-ups).

Each simulated day is one transaction: the day's new master rows, master-data updates, invoices
and their lines, and the generator's own bookkeeping (how many days are written), so an
interrupted run resumes where it stopped and a re-run writes nothing twice.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterable

import numpy as np
import sqlalchemy as sa

from generator import reference as ref
from generator.simulate import DayBatch
from generator.world import Scale, World

metadata = sa.MetaData()
Money = sa.Numeric(14, 2, asdecimal=False)


def _audit() -> list[sa.Column]:
    return [
        sa.Column("CreatedAt", sa.DateTime, nullable=False),
        sa.Column("ModifiedAt", sa.DateTime, nullable=False, index=True),
    ]


city = sa.Table(
    "MV_SetupCity",
    metadata,
    sa.Column("CityID", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("CityName", sa.String(80), nullable=False),
    sa.Column("Region", sa.String(80), nullable=False),
    *_audit(),
)
area = sa.Table(
    "MV_SetupArea",
    metadata,
    sa.Column("AreaID", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("AreaName", sa.String(80), nullable=False),
    sa.Column("CityID", sa.Integer, nullable=False),
    *_audit(),
)
brand = sa.Table(
    "Brand",
    metadata,
    sa.Column("BrandID", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("BrandName", sa.String(80), nullable=False),
    *_audit(),
)
category = sa.Table(
    "Category",
    metadata,
    sa.Column("CategoryID", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("CategoryName", sa.String(80), nullable=False),
    *_audit(),
)
subcategory = sa.Table(
    "SubCategory",
    metadata,
    sa.Column("SubCategoryID", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("SubCategoryName", sa.String(80), nullable=False),
    sa.Column("CategoryID", sa.Integer, nullable=False),
    *_audit(),
)
product = sa.Table(
    "MV_SetupProduct",
    metadata,
    sa.Column("ProductID", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("SKU", sa.String(20), nullable=False),
    sa.Column("ProductName", sa.String(200), nullable=False),
    sa.Column("Description", sa.String(500)),
    sa.Column("BrandID", sa.Integer, nullable=False),
    sa.Column("SubCategoryID", sa.Integer, nullable=False),
    sa.Column("ListPrice", Money, nullable=False),
    sa.Column("UnitCost", Money, nullable=False),
    sa.Column("LaunchDate", sa.Date, nullable=False),
    sa.Column("IsActive", sa.Boolean, nullable=False),
    *_audit(),
)
customer = sa.Table(
    "MV_SetupCustomer",
    metadata,
    sa.Column("CustomerID", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("CustomerCode", sa.String(20), nullable=False),
    sa.Column("CustomerName", sa.String(120), nullable=False),
    sa.Column("Gender", sa.String(1), nullable=False),
    sa.Column("BirthDate", sa.Date),
    sa.Column("CustomerType", sa.String(20), nullable=False),
    sa.Column("Segment", sa.String(20), nullable=False),
    sa.Column("Phone", sa.String(20)),
    sa.Column("Email", sa.String(120)),
    sa.Column("CityID", sa.Integer, nullable=False),
    sa.Column("AreaID", sa.Integer, nullable=False),
    sa.Column("RegistrationDate", sa.Date, nullable=False),
    sa.Column("Status", sa.String(10), nullable=False),
    *_audit(),
)
sales = sa.Table(
    "MV_Sales",
    metadata,
    sa.Column("InvoiceID", sa.BigInteger, primary_key=True, autoincrement=False),
    sa.Column("InvoiceNo", sa.String(20), nullable=False),
    sa.Column("InvoiceDate", sa.DateTime, nullable=False, index=True),
    sa.Column("CustomerID", sa.Integer, nullable=False),
    sa.Column("CityID", sa.Integer, nullable=False),
    sa.Column("AreaID", sa.Integer, nullable=False),
    sa.Column("BranchCode", sa.String(12), nullable=False),
    sa.Column("Channel", sa.String(10), nullable=False),
    sa.Column("PaymentType", sa.String(20), nullable=False),
    sa.Column("InvoiceType", sa.String(10), nullable=False),
    sa.Column("OriginalInvoiceID", sa.BigInteger),
    sa.Column("GrossAmount", Money, nullable=False),
    sa.Column("DiscountAmount", Money, nullable=False),
    sa.Column("NetAmount", Money, nullable=False),
    sa.Column("Status", sa.String(10), nullable=False),
    *_audit(),
)
sales_detail = sa.Table(
    "MV_SalesDetail",
    metadata,
    sa.Column("InvoiceID", sa.BigInteger, primary_key=True, autoincrement=False),
    sa.Column("LineNo", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("ProductID", sa.Integer, nullable=False),
    sa.Column("Quantity", sa.Integer, nullable=False),
    sa.Column("UnitPrice", Money, nullable=False),
    sa.Column("DiscountAmount", Money, nullable=False),
    sa.Column("LineAmount", Money, nullable=False),
    *_audit(),
)
# The generator's own bookkeeping; not part of the ERP contract.
generator_state = sa.Table(
    "_lakehouse_generator",
    metadata,
    sa.Column("key", sa.String(40), primary_key=True),
    sa.Column("value", sa.Text, nullable=False),
)
ERP_TABLES = [city, area, brand, category, subcategory, product, customer, sales, sales_detail]


def _ts(ms: int) -> dt.datetime:
    return dt.datetime(1970, 1, 1) + dt.timedelta(milliseconds=int(ms))


def _midnight(world: World, day: int) -> dt.datetime:
    return dt.datetime.combine(world.day_date(day), dt.time())


class GeneratorMismatch(RuntimeError):
    """The ERP database holds a world generated with other parameters."""


class ErpWriter:
    def __init__(self, url: str):
        self.url = url
        if url.startswith("sqlite:///"):
            from pathlib import Path

            Path(url.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
        self.engine = sa.create_engine(url)

    def prepare(self, scale: Scale, reset: bool = False) -> int:
        """Create the tables if needed; return how many days are already written."""
        if reset:
            metadata.drop_all(self.engine)
        metadata.create_all(self.engine)
        with self.engine.connect() as conn:
            rows = conn.execute(sa.select(generator_state.c.key, generator_state.c.value))
            state = {key: value for key, value in rows}
        if not state:
            return 0
        if json.loads(state["scale"]) != scale.to_dict():
            raise GeneratorMismatch(
                f"the ERP database at {self.url} was generated with {state['scale']}; "
                f"asked for {json.dumps(scale.to_dict())}. Use --reset to start over."
            )
        return int(state["days_written"])

    def write_master(self, world: World) -> None:
        """Reference data and the master rows that exist before the window starts."""
        before = _midnight(world, 0) - dt.timedelta(days=1)
        long_ago = dt.datetime(2020, 1, 1)
        with self.engine.begin() as conn:
            conn.execute(
                city.insert(),
                [
                    {
                        "CityID": i + 1,
                        "CityName": name,
                        "Region": world.city_regions[i],
                        "CreatedAt": long_ago,
                        "ModifiedAt": long_ago,
                    }
                    for i, name in enumerate(world.city_names)
                ],
            )
            conn.execute(
                area.insert(),
                [
                    {
                        "AreaID": i + 1,
                        "AreaName": name,
                        "CityID": int(world.area_city[i]) + 1,
                        "CreatedAt": long_ago,
                        "ModifiedAt": long_ago,
                    }
                    for i, name in enumerate(world.area_names)
                ],
            )
            conn.execute(
                brand.insert(),
                [
                    {
                        "BrandID": i + 1,
                        "BrandName": name,
                        "CreatedAt": long_ago,
                        "ModifiedAt": long_ago,
                    }
                    for i, name in enumerate(world.brand_names)
                ],
            )
            conn.execute(
                category.insert(),
                [
                    {
                        "CategoryID": i + 1,
                        "CategoryName": name,
                        "CreatedAt": long_ago,
                        "ModifiedAt": long_ago,
                    }
                    for i, name in enumerate(world.category_names)
                ],
            )
            conn.execute(
                subcategory.insert(),
                [
                    {
                        "SubCategoryID": i + 1,
                        "SubCategoryName": name,
                        "CategoryID": int(world.subcategory_category[i]) + 1,
                        "CreatedAt": long_ago,
                        "ModifiedAt": long_ago,
                    }
                    for i, name in enumerate(world.subcategory_names)
                ],
            )
            # In chunks: a million customers as one list of dicts would cost a GB.
            for chunk in np.array_split(
                np.flatnonzero(world.product_launch_day < 0), max(1, world.n_products // 20_000)
            ):
                self._insert_products(conn, world, chunk, before)
            for chunk in np.array_split(
                np.flatnonzero(world.customer_registered_day < 0),
                max(1, world.n_customers // 20_000),
            ):
                self._insert_customers(conn, world, chunk, before)
            self._set_state(conn, world.scale, 0)

    def write_day(self, world: World, batch: DayBatch) -> None:
        midnight = _midnight(world, batch.day)
        with self.engine.begin() as conn:
            self._insert_products(conn, world, batch.new_products, midnight)
            self._insert_customers(conn, world, batch.new_customers, midnight)
            self._apply_changes(conn, world, batch, midnight)
            self._insert_sales(conn, batch)
            self._set_state(conn, world.scale, batch.day + 1)

    # -- rows -----------------------------------------------------------------------------

    @staticmethod
    def _insert_products(conn, world: World, indices: Iterable[int], stamp: dt.datetime) -> None:
        rows = []
        for p in map(int, indices):
            launch = world.day_date(int(world.product_launch_day[p]))
            created = (
                stamp
                if world.product_launch_day[p] >= 0
                else dt.datetime.combine(launch, dt.time())
            )
            rows.append(
                {
                    "ProductID": p + 1,
                    "SKU": f"SKU-{p + 1:06d}",
                    "ProductName": world.product_name[p],
                    "Description": world.product_description[p],
                    "BrandID": int(world.product_brand[p]) + 1,
                    "SubCategoryID": int(world.product_subcategory[p]) + 1,
                    "ListPrice": float(world.product_price[p]),
                    "UnitCost": float(world.product_cost[p]),
                    "LaunchDate": launch,
                    "IsActive": bool(world.product_active[p]),
                    "CreatedAt": created,
                    "ModifiedAt": created,
                }
            )
        if rows:
            conn.execute(product.insert(), rows)

    @staticmethod
    def _insert_customers(conn, world: World, indices: Iterable[int], stamp: dt.datetime) -> None:
        rows = []
        for c in map(int, indices):
            registered = world.day_date(int(world.customer_registered_day[c]))
            created = (
                stamp
                if world.customer_registered_day[c] >= 0
                else dt.datetime.combine(registered, dt.time())
            )
            first, _, last = world.customer_name[c].partition(" ")
            rows.append(
                {
                    "CustomerID": c + 1,
                    "CustomerCode": f"CUST-{c + 1:07d}",
                    "CustomerName": world.customer_name[c],
                    "Gender": "F" if world.customer_gender[c] else "M",
                    "BirthDate": world.customer_birth[c].item(),
                    "CustomerType": ref.CUSTOMER_TYPES[int(world.customer_type[c])][0],
                    "Segment": ref.LOYALTY_TIERS[int(world.customer_tier[c])],
                    "Phone": f"+92 3{(c * 7919) % 50:02d} {(c * 104729) % 10_000_000:07d}",
                    "Email": f"{first}.{last}{c + 1}@example.pk".lower(),
                    "CityID": int(world.customer_city[c]) + 1,
                    "AreaID": int(world.customer_area[c]) + 1,
                    "RegistrationDate": registered,
                    "Status": "Active",
                    "CreatedAt": created,
                    "ModifiedAt": created,
                }
            )
        if rows:
            conn.execute(customer.insert(), rows)

    @staticmethod
    def _apply_changes(conn, world: World, batch: DayBatch, midnight: dt.datetime) -> None:
        for kind, index, payload in batch.changes:
            if kind.startswith("customer_"):
                if world.customer_registered_day[index] > batch.day:
                    continue  # not in the ERP yet; inserted later with the current values
                if kind == "customer_move":
                    values = {"CityID": payload[0] + 1, "AreaID": payload[1] + 1}
                elif kind == "customer_tier":
                    values = {"Segment": ref.LOYALTY_TIERS[payload]}
                else:  # customer_close
                    values = {"Status": "Closed"}
                statement = customer.update().where(customer.c.CustomerID == index + 1)
            else:
                if world.product_launch_day[index] > batch.day:
                    continue
                if kind == "product_price":
                    values = {"ListPrice": float(world.product_price[index])}
                elif kind == "product_subcategory":
                    values = {"SubCategoryID": payload + 1}
                else:  # product_retire
                    values = {"IsActive": False}
                statement = product.update().where(product.c.ProductID == index + 1)
            conn.execute(statement.values(**values, ModifiedAt=midnight))

    @staticmethod
    def _insert_sales(conn, batch: DayBatch) -> None:
        inv = batch.invoices
        if len(inv["invoice_id"]) == 0:
            return
        created = {}
        headers = []
        for i, invoice_id in enumerate(inv["invoice_id"].tolist()):
            time = _ts(inv["time"][i])
            created[invoice_id] = time
            original = int(inv["original"][i])
            headers.append(
                {
                    "InvoiceID": invoice_id,
                    "InvoiceNo": f"INV-{time.year}-{invoice_id:08d}",
                    "InvoiceDate": time,
                    "CustomerID": int(inv["customer"][i]) + 1,
                    "CityID": int(inv["city"][i]) + 1,
                    "AreaID": int(inv["area"][i]) + 1,
                    "BranchCode": str(inv["branch"][i]),
                    "Channel": str(inv["channel"][i]),
                    "PaymentType": str(inv["payment"][i]),
                    "InvoiceType": str(inv["type"][i]),
                    "OriginalInvoiceID": original if original > 0 else None,
                    "GrossAmount": float(inv["gross"][i]),
                    "DiscountAmount": float(inv["discount"][i]),
                    "NetAmount": float(inv["net"][i]),
                    "Status": str(inv["status"][i]),
                    "CreatedAt": time,
                    "ModifiedAt": _ts(inv["modified"][i]),
                }
            )
        conn.execute(sales.insert(), headers)
        lines = {name: values.tolist() for name, values in batch.lines.items()}
        conn.execute(
            sales_detail.insert(),
            [
                {
                    "InvoiceID": invoice_id,
                    "LineNo": lines["line_no"][i],
                    "ProductID": lines["product"][i] + 1,
                    "Quantity": lines["quantity"][i],
                    "UnitPrice": lines["unit_price"][i],
                    "DiscountAmount": lines["discount"][i],
                    "LineAmount": lines["amount"][i],
                    "CreatedAt": created[invoice_id],
                    "ModifiedAt": created[invoice_id],
                }
                for i, invoice_id in enumerate(lines["invoice"])
            ],
        )

    @staticmethod
    def _set_state(conn, scale: Scale, days_written: int) -> None:
        conn.execute(generator_state.delete())
        conn.execute(
            generator_state.insert(),
            [
                {"key": "scale", "value": json.dumps(scale.to_dict())},
                {"key": "days_written", "value": str(days_written)},
            ],
        )
