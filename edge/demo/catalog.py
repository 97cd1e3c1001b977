"""Demo master data (演示基础资料) for a Chinese supermarket, built deterministically from a seed.

Everything here is plain data: `build_catalog(seed)` returns the categories, items (with units and
EAN-13 barcodes under the Chinese GS1 prefixes 690–699), locations, suppliers (with valid 统一社会信用代码)
and neighbouring stores; `opening_stock(catalog, business_date, seed)` plans the opening quantities,
lots and expiry dates. Nothing is written here; `edge.demo.seed` writes it through the ledger.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import date, timedelta

from stdnum.cn import uscc

from edge.ledger.masterdata import ean13_check_digit, is_valid_ean13

DEFAULT_SEED = 20240601
CASE_UNIT = "箱"
PACK_UNIT = "提"
WEIGHED_UNIT = "g"


@dataclass(frozen=True, slots=True)
class CategorySpec:
    """A category (商品类别) and the storage class its goods need."""

    code: str
    name: str
    name_en: str
    storage_class: str


@dataclass(frozen=True, slots=True)
class LocationSpec:
    """A stock location (库位)."""

    code: str
    name: str
    name_en: str
    kind: str
    storage_class: str


@dataclass(frozen=True, slots=True)
class ItemSpec:
    """An item with its units (`unit -> factor` in base units) and barcodes (`code -> unit`).

    A weighed item (base unit g) has a `plu` (称重商品编号): the number the store's scales print on their
    labels; the seed registers the label's item code (flag digits + PLU, docs/barcodes.md) as a barcode.
    """

    sku: str
    name: str
    name_en: str
    category: str
    base_unit: str
    storage_class: str
    shelf_life_days: int | None
    vat_rate_bp: int
    price_fen: int
    cost_fen: int
    lot_tracked: bool
    supplier: str
    units: tuple[tuple[str, int], ...]
    barcodes: tuple[tuple[str, str], ...]
    plu: int | None = None

    @property
    def barcode(self) -> str:
        """The first barcode of the base unit (what a cashier scans for one piece)."""
        return next(code for code, unit in self.barcodes if unit == self.base_unit)


@dataclass(frozen=True, slots=True)
class SupplierSpec:
    """A supplier (供应商) with its unified social credit code (统一社会信用代码)."""

    id: str
    name: str
    credit_code: str
    contact: str
    phone: str
    categories: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class StoreSpec:
    """A neighbouring store (邻近门店) that stock can be transferred to or from."""

    id: str
    name: str


@dataclass(frozen=True, slots=True)
class Catalog:
    categories: tuple[CategorySpec, ...]
    locations: tuple[LocationSpec, ...]
    items: tuple[ItemSpec, ...]
    suppliers: tuple[SupplierSpec, ...]
    neighbour_stores: tuple[StoreSpec, ...]


@dataclass(frozen=True, slots=True)
class OpeningStock:
    """One opening balance (期初库存): `qty` base units of `sku` at `location`, in `lot` when tracked."""

    sku: str
    location: str
    qty: int
    supplier: str
    cost_fen: int
    lot: str | None = None
    expiry: date | None = None


LOCATIONS: tuple[LocationSpec, ...] = (
    LocationSpec("floor", "卖场", "Sales floor", "floor", "ambient"),
    LocationSpec("backroom", "后仓", "Back room", "backroom", "ambient"),
    LocationSpec("cold", "冷藏库", "Cold room", "cold", "chilled"),
    LocationSpec("freezer", "冷冻库", "Freezer", "freezer", "frozen"),
    LocationSpec("transit", "在途", "In transit", "transit", "ambient"),
)

# Storage class -> where its opening stock goes.
HOME_LOCATION = {"ambient": "floor", "chilled": "cold", "frozen": "freezer"}


@dataclass(frozen=True, slots=True)
class _CategoryRule:
    spec: CategorySpec
    prefix: str
    vat_rate_bp: int
    margin_pct: int  # gross margin on the retail price, in percent
    lot_tracked: bool
    shelf_life: tuple[int, int] | None  # default range of days when a form gives none
    supplier: str


_RULES: tuple[_CategoryRule, ...] = (
    _CategoryRule(CategorySpec("drinks", "饮料", "Drinks", "ambient"), "DR", 1300, 22, False, None, "sup-bev"),
    _CategoryRule(
        CategorySpec("milk", "常温奶", "Shelf-stable milk", "ambient"), "ML", 1300, 18, False, None, "sup-bev"
    ),
    _CategoryRule(CategorySpec("snacks", "零食", "Snacks", "ambient"), "SN", 1300, 30, False, None, "sup-food"),
    _CategoryRule(
        CategorySpec("instant", "方便速食", "Instant food", "ambient"), "IN", 1300, 22, False, None, "sup-food"
    ),
    _CategoryRule(CategorySpec("grain_oil", "粮油", "Grain & oil", "ambient"), "GO", 900, 12, False, None, "sup-food"),
    _CategoryRule(
        CategorySpec("condiments", "调味品", "Condiments", "ambient"), "CD", 1300, 25, False, None, "sup-food"
    ),
    _CategoryRule(
        CategorySpec("liquor", "酒类", "Beer, wine & spirits", "ambient"), "LQ", 1300, 25, False, None, "sup-bev"
    ),
    _CategoryRule(CategorySpec("household", "日化", "Household", "ambient"), "HH", 1300, 28, False, None, "sup-daily"),
    _CategoryRule(
        CategorySpec("dairy", "乳制品", "Dairy (chilled)", "chilled"), "DA", 1300, 25, True, (7, 21), "sup-cold"
    ),
    _CategoryRule(
        CategorySpec("frozen", "冷冻食品", "Frozen food", "frozen"), "FZ", 1300, 25, True, (180, 365), "sup-cold"
    ),
    _CategoryRule(CategorySpec("fresh", "生鲜", "Fresh produce", "chilled"), "FR", 900, 30, True, (3, 7), "sup-fresh"),
)

# Families: brands (zh|en|price multiplier) x forms (zh|en|unit|price yuan|case factor|shelf days|vat bp).
# A form with case factor 0 has no case unit; shelf days 0 takes the category's range; vat 0 the category's,
# vat E exempt (免税: vegetables and fresh eggs are exempt from VAT in distribution, 财税〔2011〕137号, 〔2012〕75号).
# A brand of "" lists complete products as forms.
_FAMILIES: tuple[tuple[str, tuple[str, ...], tuple[str, ...]], ...] = (
    (
        "drinks",
        (
            "可口可乐|Coca-Cola|1.0",
            "百事可乐|Pepsi|1.0",
            "雪碧|Sprite|1.0",
            "芬达橙味|Fanta Orange|1.0",
            "七喜|7UP|0.95",
            "美年达|Mirinda|0.95",
        ),
        (
            "330ml 听装|330ml can|听|3.00|24|0|0",
            "500ml 瓶装|500ml bottle|瓶|3.50|24|0|0",
            "2L 瓶装|2L bottle|瓶|8.90|6|0|0",
        ),
    ),
    (
        "drinks",
        (
            "农夫山泉|Nongfu Spring|1.0",
            "怡宝纯净水|C'estbon purified water|1.0",
            "百岁山|Ganten mineral water|1.5",
            "康师傅包装饮用水|Master Kong drinking water|0.8",
            "娃哈哈纯净水|Wahaha purified water|0.9",
        ),
        (
            "550ml 瓶装|550ml bottle|瓶|2.00|24|0|0",
            "1.5L 瓶装|1.5L bottle|瓶|4.00|12|0|0",
            "4L 桶装|4L jug|桶|8.50|4|0|0",
        ),
    ),
    (
        "drinks",
        (
            "康师傅冰红茶|Master Kong Ice Black Tea|1.0",
            "康师傅茉莉清茶|Master Kong Jasmine Tea|1.0",
            "统一冰红茶|Uni-President Ice Black Tea|1.0",
            "统一绿茶|Uni-President Green Tea|1.0",
            "东方树叶乌龙茶|Oriental Leaf Oolong Tea|1.4",
            "三得利乌龙茶|Suntory Oolong Tea|1.3",
        ),
        ("500ml 瓶装|500ml bottle|瓶|3.50|15|0|0", "1L 瓶装|1L bottle|瓶|5.50|12|0|0"),
    ),
    (
        "drinks",
        ("||1.0",),
        (
            "美汁源果粒橙 420ml|Minute Maid Pulpy Orange 420ml|瓶|3.80|12|0|0",
            "汇源100%橙汁 1L|Huiyuan 100% orange juice 1L|盒|16.90|6|0|0",
            "红牛维生素功能饮料 250ml|Red Bull energy drink 250ml|罐|6.00|24|0|0",
            "东鹏特饮 500ml|Eastroc Super Drink 500ml|瓶|5.00|24|0|0",
            "脉动青柠味 600ml|Mizone lime 600ml|瓶|5.00|15|0|0",
            "王老吉凉茶 310ml|Wong Lo Kat herbal tea 310ml|罐|3.50|24|0|0",
            "加多宝凉茶 310ml|JDB herbal tea 310ml|罐|3.50|24|0|0",
            "元气森林白桃苏打气泡水 480ml|Genki Forest white peach sparkling water 480ml|瓶|5.50|15|0|0",
            "椰树牌椰汁 245ml|Coconut Palm coconut juice 245ml|罐|4.50|24|0|0",
            "六个核桃 240ml|Yangyuan walnut drink 240ml|罐|4.50|20|0|0",
            "露露杏仁露 240ml|Lolo almond drink 240ml|罐|4.00|20|0|0",
            "旺仔牛奶 245ml|Want Want milk drink 245ml|罐|5.00|24|0|0",
        ),
    ),
    (
        "milk",
        ("伊利|Yili|1.0", "蒙牛|Mengniu|1.0"),
        (
            "纯牛奶 250ml|whole milk 250ml|盒|3.00|24|0|0",
            "高钙低脂奶 250ml|high-calcium low-fat milk 250ml|盒|3.50|24|0|0",
            "早餐奶 250ml|breakfast milk 250ml|盒|3.50|24|0|0",
        ),
    ),
    (
        "milk",
        ("||1.0",),
        (
            "特仑苏纯牛奶 250ml|Deluxe whole milk 250ml|盒|5.50|12|0|0",
            "金典纯牛奶 250ml|Satine whole milk 250ml|盒|5.50|12|0|0",
            "安慕希希腊风味酸奶 205g|Ambrosial Greek-style yogurt 205g|盒|5.50|12|0|0",
            "纯甄风味酸牛奶 200g|Just Yogurt 200g|盒|5.00|12|0|0",
            "伊利QQ星儿童成长牛奶 125ml|Yili QQ Star kids' milk 125ml|盒|3.00|20|0|0",
            "蒙牛真果粒草莓味 250g|Mengniu Fruit Milk strawberry 250g|盒|4.00|12|0|0",
        ),
    ),
    (
        "snacks",
        ("乐事薯片|Lay's potato chips|1.0",),
        (
            "原味 70g|original 70g|袋|7.50|0|0|0",
            "黄瓜味 70g|cucumber 70g|袋|7.50|0|0|0",
            "青柠味 70g|lime 70g|袋|7.50|0|0|0",
            "番茄味 70g|tomato 70g|袋|7.50|0|0|0",
            "意大利香浓红烩味 70g|Italian red meat 70g|袋|7.50|0|0|0",
        ),
    ),
    (
        "snacks",
        ("品客薯片|Pringles|1.0",),
        (
            "原味 110g|original 110g|罐|12.90|0|0|0",
            "酸乳酪洋葱味 110g|sour cream & onion 110g|罐|12.90|0|0|0",
            "香辣味 110g|hot & spicy 110g|罐|12.90|0|0|0",
        ),
    ),
    (
        "snacks",
        ("奥利奥夹心饼干|Oreo sandwich cookies|1.0",),
        (
            "原味 97g|original 97g|盒|6.50|24|0|0",
            "草莓味 97g|strawberry 97g|盒|6.50|24|0|0",
            "巧克力味 97g|chocolate 97g|盒|6.50|24|0|0",
        ),
    ),
    (
        "snacks",
        ("三只松鼠|Three Squirrels|1.0",),
        (
            "每日坚果 750g|daily nuts 750g|盒|99.00|0|0|0",
            "夏威夷果 160g|macadamia nuts 160g|袋|25.90|0|0|0",
            "碧根果 120g|pecans 120g|袋|19.90|0|0|0",
            "开心果 130g|pistachios 130g|袋|24.90|0|0|0",
            "手剥巴旦木 120g|almonds 120g|袋|16.90|0|0|0",
        ),
    ),
    (
        "snacks",
        ("||1.0",),
        (
            "可比克薯片 番茄味 45g|Copico potato chips tomato 45g|袋|4.00|0|0|0",
            "旺旺雪饼 84g|Want Want rice crackers 84g|袋|6.00|0|0|0",
            "旺旺仙贝 52g|Want Want senbei 52g|袋|4.50|0|0|0",
            "旺仔小馒头 100g|Want Want milk puffs 100g|袋|6.50|0|0|0",
            "旺仔QQ糖 20g|Want Want QQ gummies 20g|包|1.50|0|0|0",
            "良品铺子猪肉脯 100g|Bestore pork jerky 100g|袋|19.90|0|0|0",
            "良品铺子芒果干 108g|Bestore dried mango 108g|袋|12.90|0|0|0",
            "周黑鸭卤鸭脖 140g|Zhou Hei Ya braised duck neck 140g|盒|19.90|0|0|0",
            "德芙丝滑牛奶巧克力 43g|Dove silky milk chocolate 43g|块|7.90|0|0|0",
            "德芙醇黑巧克力 43g|Dove dark chocolate 43g|块|7.90|0|0|0",
            "士力架花生夹心巧克力 51g|Snickers peanut bar 51g|条|4.50|0|0|0",
            "好丽友巧克力派 6枚 204g|Orion Choco Pie 6 pcs 204g|盒|12.90|0|0|0",
            "达利园蛋黄派 8枚 184g|Dali egg yolk pie 8 pcs 184g|盒|9.90|0|0|0",
            "徐福记酥心糖 200g|Hsu Fu Chi crispy candy 200g|袋|13.90|0|0|0",
            "卫龙大面筋 106g|Weilong spicy gluten strips 106g|袋|3.50|0|0|0",
            "卫龙魔芋爽 180g|Weilong konjac strips 180g|袋|12.90|0|0|0",
            "上好佳鲜虾片 40g|Oishi prawn crackers 40g|袋|3.00|0|0|0",
            "绿箭口香糖 5片装|Doublemint chewing gum 5 sticks|包|2.00|0|0|0",
            "益达无糖口香糖 40粒|Extra sugar-free gum 40 pcs|瓶|11.90|0|0|0",
            "康师傅3+2苏打夹心饼干 125g|Master Kong 3+2 soda crackers 125g|袋|5.50|0|0|0",
            "洽洽香瓜子 260g|ChaCha roasted sunflower seeds 260g|袋|9.90|0|0|0",
            "亲亲虾条 40g|QinQin shrimp sticks 40g|袋|2.50|0|0|0",
        ),
    ),
    (
        "instant",
        ("康师傅|Master Kong|1.0", "统一|Uni-President|1.0"),
        (
            "红烧牛肉面 袋装|braised beef noodles, bag|包|3.00|24|0|0",
            "红烧牛肉面 桶装|braised beef noodles, cup|桶|4.50|12|0|0",
            "老坛酸菜牛肉面 袋装|pickled cabbage beef noodles, bag|包|3.00|24|0|0",
            "老坛酸菜牛肉面 桶装|pickled cabbage beef noodles, cup|桶|4.50|12|0|0",
        ),
    ),
    (
        "instant",
        ("||1.0",),
        (
            "康师傅鲜虾鱼板面 袋装|Master Kong shrimp & fishcake noodles, bag|包|3.00|24|0|0",
            "康师傅香辣牛肉面 桶装|Master Kong spicy beef noodles, cup|桶|4.50|12|0|0",
            "统一汤达人日式豚骨拉面|Uni-President Soup Daren tonkotsu ramen|桶|6.50|12|0|0",
            "今麦郎一桶半红烧牛肉面|Jinmailang 1.5-cup braised beef noodles|桶|4.50|12|0|0",
            "白象汤好喝老母鸡汤面|Baixiang old hen soup noodles|桶|5.50|12|0|0",
            "海底捞自煮火锅 麻辣嫩牛|Haidilao self-heating hotpot spicy beef|盒|29.90|0|0|0",
            "自嗨锅煲仔饭 台式卤肉|Zihaiguo claypot rice Taiwanese braised pork|盒|19.90|0|0|0",
            "好欢螺螺蛳粉 400g|Haohuanluo river-snail rice noodles 400g|袋|13.90|0|0|0",
            "李子柒柳州螺蛳粉 335g|Liziqi Liuzhou river-snail rice noodles 335g|袋|13.90|0|0|0",
            "白家陈记酸辣粉 105g|Baijia hot & sour glass noodles 105g|桶|6.50|12|0|0",
            "双汇王中王火腿肠 10支装 400g|Shuanghui Wangzhongwang ham sausage 10 x 40g|包|15.90|0|0|0",
            "梅林午餐肉 340g|Maling luncheon meat 340g|罐|18.90|24|0|0",
            "娃哈哈八宝粥 360g|Wahaha eight-treasure congee 360g|罐|4.00|12|0|0",
            "银鹭花生牛奶 370ml|Yinlu peanut milk 370ml|罐|4.50|24|0|0",
        ),
    ),
    (
        "grain_oil",
        ("||1.0",),
        (
            "金龙鱼黄金比例食用植物调和油 5L|Arowana golden-ratio blended oil 5L|桶|69.90|4|0|0",
            "金龙鱼东北大米 5kg|Arowana northeast rice 5kg|袋|39.90|0|0|0",
            "福临门一级大豆油 5L|Fortune first-grade soybean oil 5L|桶|59.90|4|0|0",
            "福临门东北大米 5kg|Fortune northeast rice 5kg|袋|36.90|0|0|0",
            "福临门玉米油 4L|Fortune corn oil 4L|桶|56.90|4|0|0",
            "鲁花5S压榨一级花生油 5L|Luhua 5S pressed peanut oil 5L|桶|159.90|4|0|0",
            "鲁花5S压榨一级花生油 1.8L|Luhua 5S pressed peanut oil 1.8L|瓶|59.90|6|0|0",
            "十月稻田五常大米 5kg|Shiyue Daotian Wuchang rice 5kg|袋|69.90|0|0|0",
            "十月稻田长粒香大米 2.5kg|Shiyue Daotian long-grain fragrant rice 2.5kg|袋|29.90|0|0|0",
            "五得利特精小麦粉 5kg|Wudeli extra-fine wheat flour 5kg|袋|22.90|0|0|0",
            "五得利富强小麦粉 2.5kg|Wudeli Fuqiang wheat flour 2.5kg|袋|12.90|0|0|0",
            "香满园美味富强小麦粉 5kg|Xiangmanyuan wheat flour 5kg|袋|24.90|0|0|0",
            "北大荒有机小米 1kg|Beidahuang organic millet 1kg|袋|19.90|0|0|0",
            "陈克明鸡蛋挂面 900g|Chenkeming egg noodles 900g|袋|9.90|0|0|1300",
            "金沙河原味挂面 1kg|Jinshahe plain noodles 1kg|袋|8.90|0|0|1300",
            "金龙鱼芝麻香油 400ml|Arowana sesame oil 400ml|瓶|24.90|12|0|0",
        ),
    ),
    (
        "condiments",
        ("海天|Haday|1.0",),
        (
            "金标生抽 1.28L|Golden Label light soy sauce 1.28L|瓶|12.90|6|0|0",
            "草菇老抽 500ml|mushroom dark soy sauce 500ml|瓶|9.90|12|0|0",
            "上等蚝油 520g|premium oyster sauce 520g|瓶|8.90|12|0|0",
            "味极鲜酱油 760ml|Weijixian soy sauce 760ml|瓶|11.90|12|0|0",
            "黄豆酱 800g|soybean paste 800g|瓶|10.90|12|0|0",
            "古道料酒 450ml|cooking wine 450ml|瓶|6.50|12|0|0",
        ),
    ),
    (
        "condiments",
        ("李锦记|Lee Kum Kee|1.0",),
        (
            "蒸鱼豉油 410ml|seasoned soy sauce for seafood 410ml|瓶|13.90|12|0|0",
            "旧庄特级蚝油 510g|premium oyster sauce 510g|瓶|15.90|12|0|0",
            "锦珍生抽 500ml|Kum Chun light soy sauce 500ml|瓶|9.90|12|0|0",
        ),
    ),
    (
        "condiments",
        ("||1.0",),
        (
            "老干妈风味豆豉油制辣椒 280g|Lao Gan Ma chili oil with black beans 280g|瓶|10.50|24|0|0",
            "老干妈香辣脆油辣椒 210g|Lao Gan Ma crispy chili oil 210g|瓶|9.90|24|0|0",
            "恒顺镇江香醋 500ml|Hengshun Zhenjiang vinegar 500ml|瓶|8.50|12|0|0",
            "太太乐鸡精 200g|Totole chicken bouillon 200g|袋|9.90|0|0|0",
            "中盐精制碘盐 400g|China Salt iodised salt 400g|包|2.50|40|0|0",
            "王守义十三香 45g|Wangshouyi thirteen-spice powder 45g|盒|4.50|0|0|0",
            "加加面条鲜酱油 800ml|Jiajia noodle soy sauce 800ml|瓶|8.90|12|0|0",
            "厨邦美味鲜酱油 1.25L|Chubang delicious soy sauce 1.25L|瓶|13.90|6|0|0",
            "千禾零添加酱油 500ml|Qianhe zero-additive soy sauce 500ml|瓶|12.90|12|0|0",
            "乌江涪陵榨菜 80g|Wujiang Fuling pickled mustard 80g|袋|2.00|0|0|0",
            "太古优级白砂糖 454g|Taikoo white sugar 454g|包|6.90|0|0|0",
            "王致和红腐乳 340g|Wangzhihe red fermented bean curd 340g|瓶|8.90|12|0|0",
            "郫县豆瓣酱 500g|Pixian broad-bean chili paste 500g|袋|9.90|0|0|0",
        ),
    ),
    (
        "liquor",
        ("青岛啤酒|Tsingtao|1.0",),
        (
            "经典 500ml 听装|Classic 500ml can|听|5.00|24|0|0",
            "经典 330ml 听装|Classic 330ml can|听|3.50|24|0|0",
            "纯生 500ml 听装|Draft 500ml can|听|6.50|12|0|0",
        ),
    ),
    (
        "liquor",
        ("||1.0",),
        (
            "雪花勇闯天涯啤酒 500ml 听装|Snow Brave the World beer 500ml can|听|4.50|24|0|0",
            "雪花纯生啤酒 500ml 听装|Snow Draft beer 500ml can|听|5.50|12|0|0",
            "百威啤酒 500ml 听装|Budweiser 500ml can|听|6.50|24|0|0",
            "哈尔滨冰纯啤酒 500ml 听装|Harbin Ice beer 500ml can|听|4.50|24|0|0",
            "燕京U8啤酒 500ml 听装|Yanjing U8 beer 500ml can|听|5.00|12|0|0",
            "牛栏山二锅头 42度 500ml|Niulanshan erguotou 42% 500ml|瓶|15.00|12|0|0",
            "红星二锅头 56度 500ml|Red Star erguotou 56% 500ml|瓶|25.00|12|0|0",
            "江小白表达瓶 40度 100ml|Jiang Xiaobai 40% 100ml|瓶|20.00|24|0|0",
            "洋河海之蓝 42度 480ml|Yanghe Ocean Blue 42% 480ml|瓶|158.00|6|0|0",
            "泸州老窖头曲 52度 500ml|Luzhou Laojiao Touqu 52% 500ml|瓶|89.00|6|0|0",
            "长城干红葡萄酒 750ml|Great Wall dry red wine 750ml|瓶|68.00|6|0|0",
            "张裕解百纳干红 750ml|Changyu Cabernet Gernischt 750ml|瓶|98.00|6|0|0",
            "古越龙山五年陈花雕酒 500ml|Guyue Longshan 5-year Huadiao wine 500ml|瓶|29.90|12|0|0",
        ),
    ),
    (
        "household",
        ("||1.0",),
        (
            "蓝月亮深层洁净洗衣液 3kg|Bluemoon deep-clean laundry liquid 3kg|瓶|49.90|4|0|0",
            "蓝月亮深层洁净洗衣液 1kg|Bluemoon deep-clean laundry liquid 1kg|瓶|19.90|12|0|0",
            "蓝月亮芦荟抑菌洗手液 500g|Bluemoon aloe hand wash 500g|瓶|16.90|12|0|0",
            "立白洗洁精 1.5kg|Liby dishwashing liquid 1.5kg|瓶|12.90|8|0|0",
            "立白无磷洗衣粉 1.6kg|Liby phosphate-free washing powder 1.6kg|袋|15.90|8|0|0",
            "汰渍净白洗衣粉 1.65kg|Tide whitening washing powder 1.65kg|袋|17.90|8|0|0",
            "奥妙除菌洗衣液 3kg|OMO antibacterial laundry liquid 3kg|瓶|45.90|4|0|0",
            "雕牌超能皂 226g|Diaopai super laundry soap 226g|块|4.50|48|0|0",
            "舒肤佳纯白清香香皂 115g|Safeguard pure white soap 115g|块|5.50|72|0|0",
            "舒肤佳沐浴露 720ml|Safeguard body wash 720ml|瓶|39.90|12|0|0",
            "海飞丝去屑洗发水 400ml|Head & Shoulders anti-dandruff shampoo 400ml|瓶|49.90|12|0|0",
            "飘柔家庭护理洗发水 400ml|Rejoice family care shampoo 400ml|瓶|29.90|12|0|0",
            "清扬男士去屑洗发水 400g|Clear men anti-dandruff shampoo 400g|瓶|59.90|12|0|0",
            "高露洁全效牙膏 140g|Colgate Total toothpaste 140g|支|16.90|48|0|0",
            "云南白药牙膏 180g|Yunnan Baiyao toothpaste 180g|支|32.90|48|0|0",
            "佳洁士防蛀牙膏 140g|Crest cavity protection toothpaste 140g|支|12.90|48|0|0",
            "黑人双重薄荷牙膏 225g|Darlie double mint toothpaste 225g|支|19.90|48|0|0",
            "维达超韧抽纸 3层100抽 6包|Vinda tissues 3-ply 100 sheets x 6|提|19.90|8|0|0",
            "维达蓝色经典卷纸 4层 10卷|Vinda blue classic toilet rolls 4-ply x 10|提|29.90|6|0|0",
            "清风原木纯品抽纸 3层130抽 6包|Breeze log tissues 3-ply 130 sheets x 6|提|22.90|8|0|0",
            "心相印茶语卷纸 3层 10卷|Hearttex tea toilet rolls 3-ply x 10|提|26.90|6|0|0",
            "洁柔手帕纸 4层 18包|C&S pocket tissues 4-ply x 18|提|9.90|24|0|0",
            "威露士消毒液 1L|Walch disinfectant 1L|瓶|36.90|12|0|0",
            "妙洁点断式保鲜袋 中号 150只|Miaojie tear-off food bags medium x 150|盒|12.90|24|0|0",
            "超能天然皂粉 1.028kg|Chaoneng natural soap powder 1.028kg|袋|19.90|10|0|0",
        ),
    ),
    (
        "dairy",
        (
            "光明|Bright Dairy|1.0",
            "伊利|Yili|1.0",
            "蒙牛|Mengniu|0.95",
            "三元|Sanyuan|0.95",
            "新希望|New Hope|0.9",
            "君乐宝|Junlebao|0.9",
        ),
        (
            "鲜牛奶 950ml|fresh milk 950ml|盒|15.80|0|7|0",
            "原味风味发酵乳 200g|plain yogurt 200g|杯|5.50|0|21|0",
        ),
    ),
    (
        "dairy",
        ("||1.0",),
        (
            "光明优倍高品质鲜牛奶 1.4L|Bright Youbei premium fresh milk 1.4L|瓶|25.80|0|10|0",
            "卡士餐后一小时酸奶 100g|CLASSY.KISS after-meal yogurt 100g|杯|5.50|0|21|0",
            "简爱原味裸酸奶 135g|Simplelove plain yogurt 135g|杯|6.50|0|21|0",
            "养乐多活菌型乳酸菌饮品 100ml 5瓶|Yakult probiotic drink 100ml x 5|排|11.50|0|21|0",
            "蒙牛冠益乳草莓味 250g|Mengniu Guanyiru strawberry yogurt 250g|瓶|9.50|0|21|0",
            "味全每日C鲜榨橙汁 300ml|Weichuan Daily C orange juice 300ml|瓶|7.50|0|14|0",
        ),
    ),
    (
        "frozen",
        ("三全|Synear|1.0", "思念|Sinian|1.0"),
        (
            "猪肉白菜水饺 1kg|pork & cabbage dumplings 1kg|袋|19.90|10|0|0",
            "猪肉玉米水饺 1kg|pork & sweetcorn dumplings 1kg|袋|21.90|10|0|0",
            "黑芝麻汤圆 500g|black sesame tangyuan 500g|袋|11.90|0|0|0",
        ),
    ),
    (
        "frozen",
        ("||1.0",),
        (
            "湾仔码头玉米猪肉水饺 720g|Wanchai Ferry pork & sweetcorn dumplings 720g|袋|32.90|12|0|0",
            "湾仔码头荠菜猪肉云吞 500g|Wanchai Ferry shepherd's purse pork wontons 500g|袋|28.90|0|0|0",
            "必品阁王水饺 白菜猪肉 600g|bibigo king dumplings cabbage & pork 600g|袋|29.90|0|0|0",
            "思念手抓饼 原味 900g|Sinian hand-pulled pancakes 900g|袋|19.90|0|0|0",
            "安井福州鱼丸 400g|Anjoy Fuzhou fish balls 400g|袋|12.90|0|0|0",
            "安井撒尿肉丸 400g|Anjoy pork balls 400g|袋|13.90|0|0|0",
            "安井锁鲜装蟹味棒 240g|Anjoy crab sticks 240g|盒|15.90|0|0|0",
            "正大鸡翅中 500g|CP chicken mid-wings 500g|袋|29.90|0|0|0",
            "正大单冻鸡胸肉 1kg|CP frozen chicken breast 1kg|袋|25.90|0|0|0",
            "和路雪可爱多香草口味 67g|Wall's Cornetto vanilla 67g|支|6.00|0|0|0",
            "和路雪梦龙香草口味 64g|Wall's Magnum vanilla 64g|支|10.00|0|0|0",
            "伊利巧乐兹经典巧克力 75g|Yili Qiaolezi classic chocolate 75g|支|4.00|0|0|0",
            "蒙牛随变经典香草 75g|Mengniu Suibian classic vanilla 75g|支|4.00|0|0|0",
            "广州酒家速冻叉烧包 360g|Guangzhou Restaurant frozen char siu buns 360g|袋|19.90|0|0|0",
        ),
    ),
    (
        "fresh",
        ("||1.0",),
        (
            "德青源鲜鸡蛋 10枚|DQY fresh eggs x 10|盒|15.90|0|21|E",
            "白玉内酯豆腐 400g|Baiyu silken tofu 400g|盒|3.50|0|5|1300",
            "上海青 500g|Shanghai bok choy 500g|袋|4.50|0|3|E",
            "西红柿 500g|tomatoes 500g|盒|5.90|0|5|E",
            "黄瓜 500g|cucumbers 500g|袋|4.90|0|5|E",
            "土豆 1kg|potatoes 1kg|袋|5.90|0|14|E",
            "胡萝卜 1kg|carrots 1kg|袋|4.90|0|10|E",
            "富士苹果 4个装|Fuji apples x 4|盒|16.90|0|14|0",
            "海南香蕉 1kg|Hainan bananas 1kg|袋|9.90|0|5|0",
            "金针菇 200g|enoki mushrooms 200g|袋|2.90|0|5|E",
            "猪五花肉|pork belly|g|0.03|0|4|0",
            "猪里脊肉|pork tenderloin|g|0.04|0|4|0",
            "牛腩|beef brisket|g|0.09|0|4|0",
            "鲜鸡胸肉|fresh chicken breast|g|0.02|0|3|0",
            "鲜活草鱼|live grass carp|g|0.02|0|2|0",
        ),
    ),
)

# Suppliers: id, name, region code (行政区划代码), contact, phone, categories.
_SUPPLIERS: tuple[tuple[str, str, str, str, str], ...] = (
    ("sup-bev", "上海惠康饮品贸易有限公司", "310115", "陈明", "021-58801234"),
    ("sup-food", "杭州丰禾食品有限公司", "330106", "王丽", "0571-87654321"),
    ("sup-daily", "广州洁诚日化用品有限公司", "440106", "李强", "020-38881234"),
    ("sup-cold", "北京冰川冷链物流有限公司", "110105", "张伟", "010-64451234"),
    ("sup-fresh", "成都鲜农农产品有限公司", "510107", "刘芳", "028-85551234"),
)

_NEIGHBOURS: tuple[tuple[str, str], ...] = (
    ("store-zhongshan", "中山路店 Zhongshan Road store"),
    ("store-jiefang", "解放路店 Jiefang Road store"),
)

# Alphabet of the organisation-code part of a USCC (no I, O, Z, S, V).
_USCC_CHARS = "0123456789ABCDEFGHJKLMNPQRTUWXY"


def make_uscc(rng: random.Random, region: str) -> str:
    """A 统一社会信用代码 for a company (登记管理部门 9, 企业 1) registered in `region`."""
    body = "91" + region + "".join(rng.choice(_USCC_CHARS) for _ in range(9))
    return body + uscc.calc_check_digit(body)


class _Barcodes:
    """Hands out unique EAN-13 codes; one GS1 company prefix (690–699 + 4 digits) per brand."""

    def __init__(self, rng: random.Random) -> None:
        self._rng = rng
        self._companies: dict[str, str] = {}
        self._next_ref: dict[str, int] = {}
        self._used: set[str] = set()

    def _company(self, brand: str) -> str:
        if brand not in self._companies:
            while True:
                prefix = f"69{self._rng.randint(0, 9)}{self._rng.randint(0, 9999):04d}"
                if prefix not in self._companies.values():
                    break
            self._companies[brand] = prefix
            self._next_ref[brand] = self._rng.randint(0, 9000)
        return self._companies[brand]

    def next(self, brand: str) -> str:
        company = self._company(brand)
        while True:
            ref = self._next_ref[brand]
            self._next_ref[brand] = ref + self._rng.randint(1, 7)
            first12 = f"{company}{ref % 100000:05d}"
            code = first12 + str(ean13_check_digit(first12))
            if code not in self._used:
                self._used.add(code)
                return code


def _yuan_to_fen(text: str, multiplier: float) -> int:
    # Prices end in .x0 or .x9 or .x5 like shelf tags; the multiplier only scales whole brands.
    fen = round(float(text) * 100 * multiplier)
    if fen >= 100 and multiplier != 1.0:
        fen = (fen // 10) * 10 + (9 if fen % 10 >= 5 else 0)
    return max(fen, 1)


def _brand_key(brand_zh: str, form_zh: str) -> str:
    """The company a barcode belongs to: the first two characters of the brand or listed product.

    Two characters tell the brands of this catalog apart (康师傅 and 康师傅冰红茶 share a company).
    """
    return (brand_zh or form_zh)[:2]


def _join_zh(brand: str, form: str) -> str:
    if not brand:
        return form
    return f"{brand} {form}" if form[:1].isdigit() else f"{brand}{form}"


def build_catalog(seed: int = DEFAULT_SEED, *, local_store_id: str = "store-001") -> Catalog:
    """The whole demo catalog; the same seed gives the same catalog."""
    rng = random.Random(seed)
    rules = {r.spec.code: r for r in _RULES}
    codes = _Barcodes(rng)
    counters: dict[str, int] = {}
    items: list[ItemSpec] = []
    plus = 0  # PLUs of weighed items, numbered from 1 in catalog order
    for category, brands, forms in _FAMILIES:
        rule = rules[category]
        for brand_line in brands:
            brand_zh, brand_en, mult = brand_line.split("|")
            for form_line in forms:
                zh, en, unit, price, case, shelf, vat = form_line.split("|")
                counters[rule.prefix] = counters.get(rule.prefix, 0) + 1
                sku = f"{rule.prefix}{counters[rule.prefix]:04d}"
                if unit == WEIGHED_UNIT:
                    plus += 1
                items.append(
                    _make_item(
                        rng,
                        codes,
                        rule,
                        sku=sku,
                        name=_join_zh(brand_zh, zh),
                        name_en=f"{brand_en} {en}".strip(),
                        brand=_brand_key(brand_zh, zh),
                        unit=unit,
                        price_fen=_yuan_to_fen(price, float(mult)),
                        case=int(case),
                        shelf=int(shelf),
                        vat=0 if vat == "E" else int(vat) or rule.vat_rate_bp,
                        plu=plus if unit == WEIGHED_UNIT else None,
                    )
                )
    suppliers = tuple(
        SupplierSpec(
            id=sid,
            name=name,
            credit_code=make_uscc(rng, region),
            contact=contact,
            phone=phone,
            categories=tuple(r.spec.code for r in _RULES if r.supplier == sid),
        )
        for sid, name, region, contact, phone in _SUPPLIERS
    )
    neighbours = tuple(StoreSpec(sid if sid != local_store_id else f"{sid}-2", name) for sid, name in _NEIGHBOURS)
    return Catalog(
        categories=tuple(r.spec for r in _RULES),
        locations=LOCATIONS,
        items=tuple(items),
        suppliers=suppliers,
        neighbour_stores=neighbours,
    )


def _make_item(
    rng: random.Random,
    codes: _Barcodes,
    rule: _CategoryRule,
    *,
    sku: str,
    name: str,
    name_en: str,
    brand: str,
    unit: str,
    price_fen: int,
    case: int,
    shelf: int,
    vat: int,
    plu: int | None = None,
) -> ItemSpec:
    units: dict[str, int] = {unit: 1}
    barcodes: dict[str, str] = {}
    if unit == WEIGHED_UNIT:
        # Weighed goods: stock and prices per gram; the label barcode sells a kilogram by default.
        units.update({"kg": 1000, "斤": 500})
        barcodes[codes.next(brand)] = "kg"
        barcodes[codes.next(brand)] = WEIGHED_UNIT
    else:
        barcodes[codes.next(brand)] = unit
        if rng.random() < 0.12:  # a second barcode for the same piece (new packaging, promotion pack)
            barcodes[codes.next(brand)] = unit
    if case:
        units[CASE_UNIT] = case
        barcodes[codes.next(brand)] = CASE_UNIT
        if unit in ("听", "罐") and case == 24:
            units[PACK_UNIT] = 6
            barcodes[codes.next(brand)] = PACK_UNIT
    shelf_life: int | None = None
    if rule.lot_tracked:
        assert rule.shelf_life is not None
        shelf_life = shelf or rng.randint(*rule.shelf_life)
    cost_fen = max(1, round(price_fen * (100 - rule.margin_pct - rng.randint(-3, 3)) / 100))
    if unit == WEIGHED_UNIT:
        cost_fen = max(1, min(cost_fen, price_fen - 1))
    return ItemSpec(
        sku=sku,
        name=name,
        name_en=name_en,
        category=rule.spec.code,
        base_unit=unit,
        storage_class=rule.spec.storage_class,
        shelf_life_days=shelf_life,
        vat_rate_bp=vat,
        price_fen=price_fen,
        cost_fen=cost_fen,
        lot_tracked=rule.lot_tracked,
        supplier=rule.supplier,
        units=tuple(units.items()),
        barcodes=tuple(barcodes.items()),
        plu=plu,
    )


def opening_stock(catalog: Catalog, business_date: date, seed: int = DEFAULT_SEED) -> tuple[OpeningStock, ...]:
    """Opening balances large enough for hours of simulated selling.

    Ambient goods go to the sales floor (cheap goods in the thousands), items with a case unit also to
    the back room in whole cases; chilled goods to the cold room and frozen goods to the freezer, each
    in two lots (an older one expiring first, a fresh one), all with expiry dates after `business_date`.
    """
    rng = random.Random(seed + 1)
    plan: list[OpeningStock] = []
    for item in catalog.items:
        units = dict(item.units)
        if not item.lot_tracked:
            qty = rng.randint(1500, 4000) if item.price_fen <= 3000 else rng.randint(60, 400)
            plan.append(OpeningStock(item.sku, "floor", qty, item.supplier, item.cost_fen))
            if CASE_UNIT in units and rng.random() < 0.6:
                cases = rng.randint(10, 40)
                plan.append(OpeningStock(item.sku, "backroom", cases * units[CASE_UNIT], item.supplier, item.cost_fen))
            continue
        assert item.shelf_life_days is not None
        shelf = item.shelf_life_days
        location = HOME_LOCATION[item.storage_class]
        for older in (True, False):
            remaining = max(1, shelf // 3) if older else shelf - 1 if shelf > 1 else 1
            expiry = business_date + timedelta(days=remaining)
            produced = expiry - timedelta(days=shelf)
            if item.base_unit == WEIGHED_UNIT:
                qty = rng.randint(10, 40) * 1000
            else:
                qty = rng.randint(80, 300) if older else rng.randint(200, 800)
            plan.append(
                OpeningStock(
                    item.sku,
                    location,
                    qty,
                    item.supplier,
                    item.cost_fen,
                    lot=f"L{produced:%Y%m%d}{'A' if older else 'B'}",
                    expiry=expiry,
                )
            )
    return tuple(plan)


def check_catalog(catalog: Catalog) -> list[str]:
    """Problems with a catalog (empty when sound): bad or duplicate barcodes, USCCs, units."""
    problems: list[str] = []
    seen: set[str] = set()
    for item in catalog.items:
        units = dict(item.units)
        for code, unit in item.barcodes:
            if not is_valid_ean13(code) or not code.startswith("69"):
                problems.append(f"{item.sku}: barcode {code} is not an EAN-13 with a Chinese prefix")
            if code in seen:
                problems.append(f"{item.sku}: barcode {code} is used twice")
            if unit not in units:
                problems.append(f"{item.sku}: barcode {code} has unknown unit {unit}")
            seen.add(code)
        if item.cost_fen >= item.price_fen:
            problems.append(f"{item.sku}: cost {item.cost_fen} is not below price {item.price_fen}")
        if (item.plu is not None) != (item.base_unit == WEIGHED_UNIT):
            problems.append(f"{item.sku}: a PLU is for weighed items (base unit {WEIGHED_UNIT}) and each has one")
    plus = [item.plu for item in catalog.items if item.plu is not None]
    if len(plus) != len(set(plus)):
        problems.append("a PLU is used twice")
    for supplier in catalog.suppliers:
        if not uscc.is_valid(supplier.credit_code):
            problems.append(f"{supplier.id}: credit code {supplier.credit_code} is not a valid USCC")
    return problems
