"""Static reference data: geography, the product hierarchy, price levels and name parts."""

from __future__ import annotations

# (city, region, share of the customer base, areas)
CITIES: list[tuple[str, str, float, list[str]]] = [
    (
        "Karachi",
        "Sindh",
        0.22,
        [
            "Clifton",
            "DHA",
            "Gulshan-e-Iqbal",
            "North Nazimabad",
            "Saddar",
            "Korangi",
            "Malir",
            "PECHS",
        ],
    ),
    (
        "Lahore",
        "Punjab",
        0.18,
        ["Gulberg", "DHA", "Johar Town", "Model Town", "Bahria Town", "Iqbal Town", "Cantt"],
    ),
    (
        "Islamabad",
        "Islamabad Capital Territory",
        0.07,
        ["F-7", "F-10", "G-9", "I-8", "E-11", "Bahria Enclave"],
    ),
    ("Rawalpindi", "Punjab", 0.07, ["Saddar", "Satellite Town", "Bahria Town", "Chaklala"]),
    ("Faisalabad", "Punjab", 0.08, ["Madina Town", "Peoples Colony", "D Ground", "Samanabad"]),
    ("Multan", "Punjab", 0.05, ["Cantt", "Gulgasht", "Shah Rukn-e-Alam", "Bosan Road"]),
    (
        "Peshawar",
        "Khyber Pakhtunkhwa",
        0.06,
        ["Hayatabad", "University Town", "Saddar", "Gulbahar"],
    ),
    ("Quetta", "Balochistan", 0.03, ["Jinnah Town", "Satellite Town", "Cantt"]),
    ("Hyderabad", "Sindh", 0.05, ["Latifabad", "Qasimabad", "Saddar"]),
    ("Sialkot", "Punjab", 0.03, ["Cantt", "Paris Road", "Model Town"]),
    ("Gujranwala", "Punjab", 0.04, ["Satellite Town", "Model Town", "DC Road"]),
    ("Abbottabad", "Khyber Pakhtunkhwa", 0.02, ["Mandian", "Jinnahabad", "Cantt"]),
]

# category -> [(subcategory, median list price in PKR, repeat-purchase cycle in days or 0)]
CATEGORIES: dict[str, list[tuple[str, float, int]]] = {
    "Electronics": [
        ("Mobile Phones", 55000, 0),
        ("Laptops", 150000, 0),
        ("Headphones", 6000, 0),
        ("Televisions", 90000, 0),
        ("Smart Watches", 15000, 0),
        ("Cameras", 80000, 0),
    ],
    "Home & Kitchen": [
        ("Cookware", 5000, 0),
        ("Small Appliances", 12000, 0),
        ("Bedding", 7000, 0),
        ("Home Decor", 3000, 0),
        ("Storage", 2000, 0),
    ],
    "Fashion": [
        ("Men's Clothing", 3500, 0),
        ("Women's Clothing", 4500, 0),
        ("Footwear", 5000, 0),
        ("Watches", 8000, 0),
        ("Bags", 4000, 0),
    ],
    "Beauty & Personal Care": [
        ("Skincare", 1800, 30),
        ("Makeup", 1500, 0),
        ("Fragrances", 6000, 0),
        ("Hair Care", 900, 28),
        ("Grooming", 2500, 35),
    ],
    "Grocery": [
        ("Beverages", 400, 10),
        ("Snacks", 300, 9),
        ("Staples", 1200, 14),
        ("Dairy", 350, 7),
        ("Household Supplies", 700, 21),
    ],
    "Sports & Outdoors": [
        ("Fitness Equipment", 12000, 0),
        ("Cricket", 4000, 0),
        ("Cycling", 30000, 0),
        ("Outdoor Gear", 5000, 0),
    ],
    "Toys & Baby": [("Toys", 2500, 0), ("Baby Care", 1500, 21), ("Diapers", 2200, 12)],
    "Books & Stationery": [
        ("Books", 1200, 0),
        ("Stationery", 500, 30),
        ("Office Supplies", 900, 0),
    ],
}

# How much of the traffic each category draws before regional and personal tastes (same order
# as CATEGORIES).
CATEGORY_BASE_SHARE = [1.3, 1.1, 1.4, 1.0, 1.5, 0.6, 0.6, 0.5]

# Brands by their main category; a few also sell in a second category.
BRANDS: dict[str, list[str]] = {
    "Electronics": ["Voltra", "Nexon", "Sonique", "Pixelon", "Zentek", "Auralis", "Kairo", "Lumio"],
    "Home & Kitchen": ["Casa Nova", "Kitchora", "Dreamweave", "Homely", "Ironleaf", "Nestwell"],
    "Fashion": ["Indigo Lane", "Threadline", "Kasheer", "Urbane", "Sole Street", "Velour"],
    "Beauty & Personal Care": ["Glowra", "Silkme", "Aromaé", "Purely", "Mane & Co", "Bareface"],
    "Grocery": ["Farm Fresh", "Daily Harvest", "Chai Bazaar", "Crunchy", "Pak Pantry", "Sparkle"],
    "Sports & Outdoors": ["Striker", "Peakline", "Wheelz", "Boundary", "Trekka"],
    "Toys & Baby": ["Tiny Tots", "Playmora", "Cuddle", "Little Hands"],
    "Books & Stationery": ["Inkwell", "Paperleaf", "Readers Hub", "Scribe"],
}
CROSS_CATEGORY_BRANDS: dict[str, str] = {
    "Zentek": "Sports & Outdoors",
    "Velour": "Beauty & Personal Care",
    "Homely": "Grocery",
    "Cuddle": "Beauty & Personal Care",
}

# Words for product names and descriptions (content-based similarity needs some text).
PRODUCT_ADJECTIVES = [
    "Classic",
    "Pro",
    "Lite",
    "Max",
    "Plus",
    "Eco",
    "Prime",
    "Mini",
    "Ultra",
    "Smart",
    "Deluxe",
    "Essential",
    "Signature",
    "Active",
    "Comfort",
]
FEATURE_WORDS: dict[str, list[str]] = {
    "Electronics": [
        "wireless",
        "fast charging",
        "4K",
        "noise cancelling",
        "long battery",
        "bluetooth",
        "AMOLED",
        "waterproof",
        "dual camera",
        "USB-C",
    ],
    "Home & Kitchen": [
        "non-stick",
        "stainless steel",
        "energy saving",
        "cotton",
        "easy clean",
        "compact",
        "dishwasher safe",
        "handcrafted",
    ],
    "Fashion": [
        "cotton",
        "slim fit",
        "leather",
        "embroidered",
        "casual",
        "formal",
        "lawn",
        "breathable",
        "waterproof",
    ],
    "Beauty & Personal Care": [
        "organic",
        "vitamin C",
        "fragrance free",
        "long lasting",
        "herbal",
        "SPF 30",
        "for dry skin",
        "sulfate free",
    ],
    "Grocery": [
        "family pack",
        "low fat",
        "organic",
        "sugar free",
        "imported",
        "value pack",
        "fresh",
        "spicy",
    ],
    "Sports & Outdoors": [
        "lightweight",
        "professional",
        "adjustable",
        "durable",
        "grip",
        "foldable",
        "all weather",
    ],
    "Toys & Baby": [
        "educational",
        "soft",
        "BPA free",
        "ages 3+",
        "hypoallergenic",
        "colourful",
        "gentle",
    ],
    "Books & Stationery": [
        "hardcover",
        "bestseller",
        "A4",
        "refillable",
        "Urdu",
        "English",
        "illustrated",
    ],
}
SEARCH_TERMS_EXTRA = ["sale", "best price", "new", "offer", "cheap", "original", "deal"]

FIRST_NAMES_MALE = [
    "Ahmed",
    "Ali",
    "Hassan",
    "Usman",
    "Bilal",
    "Hamza",
    "Omar",
    "Saad",
    "Fahad",
    "Imran",
    "Kashif",
    "Zain",
    "Danish",
    "Asad",
    "Faisal",
    "Tariq",
    "Waqas",
    "Junaid",
    "Adnan",
    "Shahid",
]
FIRST_NAMES_FEMALE = [
    "Ayesha",
    "Fatima",
    "Sana",
    "Hira",
    "Maryam",
    "Zainab",
    "Iqra",
    "Amna",
    "Mahnoor",
    "Rabia",
    "Sadia",
    "Nida",
    "Saba",
    "Farah",
    "Komal",
    "Anam",
    "Mehwish",
    "Bushra",
    "Hina",
    "Saima",
]
LAST_NAMES = [
    "Khan",
    "Ahmed",
    "Ali",
    "Hussain",
    "Malik",
    "Qureshi",
    "Sheikh",
    "Butt",
    "Chaudhry",
    "Siddiqui",
    "Raza",
    "Shah",
    "Iqbal",
    "Javed",
    "Mirza",
    "Abbasi",
    "Baig",
    "Akhtar",
    "Rehman",
    "Aslam",
]

CUSTOMER_TYPES = [("Individual", 0.93), ("Corporate", 0.04), ("Reseller", 0.03)]
LOYALTY_TIERS = ["Regular", "Silver", "Gold", "Platinum"]
DEVICES = [
    ("mobile_app_android", 0.33),
    ("mobile_app_ios", 0.12),
    ("mobile_web", 0.30),
    ("desktop_web", 0.25),
]
ONLINE_PAYMENTS = [("Card", 0.40), ("Cash on Delivery", 0.45), ("Wallet", 0.15)]
STORE_PAYMENTS = [("Cash", 0.55), ("Card", 0.45)]

# Sessions by hour of day (local time), and by weekday (Monday=0).
HOUR_WEIGHTS = [
    0.6,
    0.3,
    0.2,
    0.15,
    0.15,
    0.2,
    0.5,
    1.0,
    1.6,
    2.0,
    2.3,
    2.6,
    3.0,
    3.1,
    2.8,
    2.5,
    2.4,
    2.6,
    3.0,
    3.6,
    4.2,
    4.6,
    4.0,
    2.2,
]
WEEKDAY_WEIGHTS = [0.95, 0.92, 0.93, 0.97, 1.02, 1.12, 1.09]
